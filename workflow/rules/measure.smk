# measure: per shard, non-parametric and parametric morphology and the
# half-mass radius by the colour -> M/L -> mass-profile route.


rule measure:
    input:
        cutouts=f"{OUT}/cutouts/{{shard}}.zarr",
        segmaps=f"{OUT}/segmaps/{{shard}}.zarr",
        table=f"{OUT}/segmaps/{{shard}}.parquet",
    output:
        features=f"{OUT}/features/{{shard}}.parquet",
    params:
        config=get_measure_config,
    threads: 2
    log:
        f"{LOGS}/measure/{{shard}}.log",
    benchmark:
        f"{BENCH}/measure/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "galcat measure --config-json {params.config:q} --threads {threads}"
        " --cutouts {input.cutouts} --segmaps {input.segmaps}"
        " --segment-table {input.table} --shard {wildcards.shard}"
        " --output {output.features} 2> {log}"
