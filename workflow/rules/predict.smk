# predict: per model and shard, batched inference over every cutout of the shard.
# predict_pixels: the same for a per-pixel family, which also writes the shard's
#   pixel maps (pixelmaps/{model}/{shard}.zarr, beside segmaps/).
# evaluate: per model, test-split scores of the model and its baselines.


rule predict:
    wildcard_constraints:
        model=pixel_models_regex(False),
    input:
        model=f"{OUT}/models/{{model}}/model.pt",
        splits=f"{OUT}/models/{{model}}/splits.parquet",
        cutouts=f"{OUT}/cutouts/{{shard}}.zarr",
        objects=get_predict_objects,
        features=get_predict_features,
        residuals=get_predict_residuals,
    output:
        predictions=f"{OUT}/predictions/{{model}}/{{shard}}.parquet",
    params:
        config=get_predict_config,
    # a short job whose start (importing torch) is a good part of it: one core
    # each lets two run side by side; the SLURM profile gives it more
    threads: 1
    log:
        f"{LOGS}/predict/{{model}}/{{shard}}.log",
    benchmark:
        f"{BENCH}/predict/{{model}}/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "galcat predict --config-json {params.config:q} --threads {threads}"
        " --model {wildcards.model}"
        " --model-file {input.model} --splits {input.splits} --cutouts {input.cutouts}"
        " --objects {input.objects} --features {input.features}"
        " --residuals {input.residuals} --output {output.predictions} 2> {log}"


rule predict_pixels:
    wildcard_constraints:
        model=pixel_models_regex(True),
    input:
        model=f"{OUT}/models/{{model}}/model.pt",
        splits=f"{OUT}/models/{{model}}/splits.parquet",
        cutouts=f"{OUT}/cutouts/{{shard}}.zarr",
    output:
        predictions=f"{OUT}/predictions/{{model}}/{{shard}}.parquet",
        pixelmaps=directory(f"{OUT}/pixelmaps/{{model}}/{{shard}}.zarr"),
    params:
        config=get_predict_config,
    threads: 1
    log:
        f"{LOGS}/predict/{{model}}/{{shard}}.log",
    benchmark:
        f"{BENCH}/predict/{{model}}/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "galcat predict --config-json {params.config:q} --threads {threads}"
        " --model {wildcards.model}"
        " --model-file {input.model} --splits {input.splits} --cutouts {input.cutouts}"
        " --output {output.predictions} --pixelmaps {output.pixelmaps} 2> {log}"


rule evaluate:
    input:
        objects=get_label_tables,
        features=get_features,
        cutouts=get_cutouts,
        segmaps=get_segmaps,
        predictions=get_model_predictions,
        pixelmaps=get_model_pixelmaps,
        splits=f"{OUT}/models/{{model}}/splits.parquet",
    output:
        metrics=f"{OUT}/models/{{model}}/metrics.json",
    params:
        config=get_evaluate_config,
    threads: 2
    log:
        f"{LOGS}/evaluate/{{model}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}.tsv"
    conda:
        ENV
    shell:
        "galcat evaluate --config-json {params.config:q} --threads {threads}"
        " --model {wildcards.model} --objects {input.objects} --features {input.features}"
        " --cutouts {input.cutouts} --segmaps {input.segmaps}"
        " --predictions {input.predictions} --pixelmaps {input.pixelmaps}"
        " --splits {input.splits} --output {output.metrics} 2> {log}"
