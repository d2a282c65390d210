# measure: per shard, non-parametric and parametric morphology and the
# half-mass radius by the colour -> M/L -> mass-profile route.


rule measure:
    input:
        cutouts=f"{OUT}/cutouts/{{shard}}.zarr",
        segmaps=f"{OUT}/segmaps/{{shard}}.zarr",
        table=f"{OUT}/segmaps/{{shard}}.parquet",
    output:
        features=f"{OUT}/features/{{shard}}.parquet",
        # what the bulge + disc model leaves, per object (models.<name>.residual_map)
        residuals=directory(f"{OUT}/residuals/{{shard}}.zarr"),
    params:
        config=get_measure_config,
    threads: 2
    resources:
        # how the job runs, not what it writes: beside the params, so an edit reruns nothing
        dask=DASK_JSON,
    log:
        f"{LOGS}/measure/{{shard}}.log",
    benchmark:
        f"{BENCH}/measure/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "galcat measure --config-json {params.config:q} --dask-json {resources.dask:q} --threads {threads}"
        " --cutouts {input.cutouts} --segmaps {input.segmaps}"
        " --segment-table {input.table} --shard {wildcards.shard}"
        " --output {output.features} --residuals {output.residuals} 2> {log}"
