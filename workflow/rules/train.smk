# train: one job per model (galcat.models), on a GPU where the profile gives one.
# Resumes from checkpoints/last.ckpt in the model's directory after a killed job.
# Labels: the survey's own (galcat.labels), with the quality cuts of config labels.
# models.<name>.init: synthetic fine-tunes the synthetic survey's model (an input).


rule train:
    input:
        objects=get_label_tables,
        cutouts=get_cutouts,
        init=get_init_model,
        features=get_train_features,
        residuals=get_train_residuals,
    output:
        model=f"{OUT}/models/{{model}}/model.pt",
        splits=f"{OUT}/models/{{model}}/splits.parquet",
        history=f"{OUT}/models/{{model}}/history.csv",
        curve=report(
            f"{OUT}/models/{{model}}/learning_curve.png",
            caption="../report/learning_curve.rst",
            category="Models",
        ),
        summary=f"{OUT}/models/{{model}}/train.json",
    params:
        config=get_train_config,
        output_dir=lambda wildcards, output: os.path.dirname(output.model),
        init_args=get_init_args,
    threads: 2
    # the longest jobs of the DAG: started before any ready predict, so that the last
    # training does not begin when the short jobs have run out (on 2 cores the science
    # config's sersic began 24 minutes in, behind the first models' predictions)
    priority: 10
    resources:
        # the SLURM profile turns this into --gpus=1 (with cpus_per_gpu for loading);
        # without a GPU, Lightning trains on the CPU
        gpu=1,
    log:
        f"{LOGS}/train/{{model}}.log",
    benchmark:
        f"{BENCH}/train/{{model}}.tsv"
    conda:
        ENV
    shell:
        "galcat train --config-json {params.config:q} --threads {threads}"
        " --model {wildcards.model} --objects {input.objects} --cutouts {input.cutouts}"
        " --output-dir {params.output_dir} {params.init_args}"
        " --features {input.features} --residuals {input.residuals} 2> {log}"
