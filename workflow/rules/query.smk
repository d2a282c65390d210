# query_catalog: one query per survey -> the object table.
# plan_shards: for archive surveys the shard list is known only after the query,
# so this small checkpoint publishes it. The synthetic survey knows its shards
# from the config and never needs it, which keeps its dry runs exact.


rule query_catalog:
    input:
        unpack(get_query_input),
    output:
        objects=f"{OUT}/objects.parquet",
    params:
        config=get_query_config,
        # Every object ever planned and its shard, kept across runs (not an output:
        # Snakemake would delete it before each query): objects keep their shard for life.
        shard_map=f"{OUT}/shard_map.parquet",
        detections=lambda wildcards, input: f"--detections {input.detections}" if input else "",
    log:
        f"{LOGS}/query_catalog.log",
    benchmark:
        f"{BENCH}/query_catalog.tsv"
    conda:
        ENV
    shell:
        "galcat query --config-json {params.config:q} {params.detections}"
        " --output {output.objects} --shard-map {params.shard_map} 2> {log}"


# detect: survey local without an object table (local.objects: detect) finds the
# objects on the mosaics, tile by tile with Dask; its table feeds query_catalog. A
# compute job (not a local rule): a large mosaic takes cores and minutes.
rule detect:
    output:
        detections=f"{OUT}/detections.parquet",
    params:
        config=get_detect_config,
    threads: 2
    resources:
        # how the job runs, not what it writes: beside the params, so an edit reruns nothing
        dask=DASK_JSON,
    log:
        f"{LOGS}/detect.log",
    benchmark:
        f"{BENCH}/detect.tsv"
    conda:
        ENV
    shell:
        "galcat detect --config-json {params.config:q} --dask-json {resources.dask:q}"
        " --threads {threads} --output {output.detections} 2> {log}"


checkpoint plan_shards:
    input:
        objects=f"{OUT}/objects.parquet",
    output:
        shards=f"{OUT}/shards.txt",
    params:
        # Per-shard object tables, rewritten only when a shard's rows change. They
        # are not declared outputs on purpose: a declared output would be
        # recreated on every query and so refetch every finished shard.
        shard_dir=lambda wildcards, output: os.path.join(os.path.dirname(output.shards), "objects"),
    log:
        f"{LOGS}/plan_shards.log",
    conda:
        ENV
    shell:
        "galcat shards --objects {input.objects} --output {output.shards}"
        " --shard-dir {params.shard_dir} 2> {log}"
