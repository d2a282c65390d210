# query_catalog: one query per survey -> the object table.
# A checkpoint: for archive surveys the shard list is known only after it ran.


checkpoint query_catalog:
    output:
        objects=f"{OUT}/objects.parquet",
    params:
        config=get_query_config(),
    log:
        f"{LOGS}/query_catalog.log",
    benchmark:
        f"{BENCH}/query_catalog.tsv"
    conda:
        ENV
    shell:
        "galcat query --config-json {params.config:q} --output {output.objects} 2> {log}"
