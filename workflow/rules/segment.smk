# segment: per shard, background, detection, deblending and the central object.


rule segment:
    input:
        cutouts=f"{OUT}/cutouts/{{shard}}.zarr",
    output:
        segmaps=directory(f"{OUT}/segmaps/{{shard}}.zarr"),
        table=f"{OUT}/segmaps/{{shard}}.parquet",
    params:
        config=get_segment_config,
    threads: 2
    resources:
        # how the job runs, not what it writes: beside the params, so an edit reruns nothing
        dask=DASK_JSON,
    log:
        f"{LOGS}/segment/{{shard}}.log",
    benchmark:
        f"{BENCH}/segment/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "galcat segment --config-json {params.config:q} --dask-json {resources.dask:q} --threads {threads}"
        " --cutouts {input.cutouts} --shard {wildcards.shard}"
        " --output-maps {output.segmaps} --output-table {output.table} 2> {log}"
