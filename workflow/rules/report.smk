# report: the one HTML page a person reads first.


rule report:
    input:
        catalogue=f"{OUT}/catalogue.parquet",
    output:
        html=report(
            f"{OUT}/report.html",
            caption="../report/report.rst",
            category="Catalogue",
        ),
    params:
        config=get_report_config,
    log:
        f"{LOGS}/report.log",
    conda:
        ENV
    shell:
        "galcat report --config-json {params.config:q}"
        " --catalogue {input.catalogue} --output {output.html} 2> {log}"
