# fetch_cutouts: per shard, download or render the cutouts into one Zarr group.


rule fetch_cutouts:
    input:
        # ancient: a grown object table must not refetch finished shards; the
        # shard's own size and the survey settings in params decide reruns.
        objects=ancient(f"{OUT}/objects.parquet"),
    output:
        cutouts=directory(f"{OUT}/cutouts/{{shard}}.zarr"),
    params:
        config=get_fetch_config,
    threads: 2
    log:
        f"{LOGS}/fetch_cutouts/{{shard}}.log",
    benchmark:
        f"{BENCH}/fetch_cutouts/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "galcat fetch --config-json {params.config:q} --threads {threads}"
        " --objects {input.objects} --shard {wildcards.shard}"
        " --output {output.cutouts} 2> {log}"
