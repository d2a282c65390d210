# fetch_cutouts: per shard, download or render the cutouts into one Zarr group.


rule fetch_cutouts:
    input:
        unpack(get_fetch_input),
    output:
        cutouts=directory(f"{OUT}/cutouts/{{shard}}.zarr"),
    params:
        config=get_fetch_config,
        objects=lambda wildcards, input: f"--objects {input.objects}" if input else "",
    threads: 2
    resources:
        # how the job runs, not what it writes: beside the params, so an edit reruns nothing
        dask=DASK_JSON,
    log:
        f"{LOGS}/fetch_cutouts/{{shard}}.log",
    benchmark:
        f"{BENCH}/fetch_cutouts/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "galcat fetch --config-json {params.config:q} --dask-json {resources.dask:q} --threads {threads}"
        " {params.objects} --shard {wildcards.shard}"
        " --output {output.cutouts} 2> {log}"
