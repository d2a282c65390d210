# report: the one HTML page a person reads first, and the figures it shows, each
# marked for Snakemake's own report (snakemake --report report.zip) with its caption
# in workflow/report/{figure}.rst.

from galcat.report import FIGURES, figure_names

# Figures scored against injected truth only where the survey has it (synthetic).
REPORT_FIGURES = figure_names(truth=SURVEY == "synthetic")


rule report:
    input:
        catalogue=f"{OUT}/catalogue.parquet",
        analysis=get_analysis_outputs,
    output:
        html=report(
            f"{OUT}/report.html",
            caption="../report/report.rst",
            category="Catalogue",
            labels={"page": "galcat report (read first)"},
        ),
        figures=[
            report(
                f"{OUT}/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Catalogue",
                subcategory="Figures",
                labels={"figure": FIGURES[name].title},
            )
            for name in REPORT_FIGURES
        ],
    params:
        config=get_report_config,
        analysis_dir=f"{OUT}/analysis",
    log:
        f"{LOGS}/report.log",
    conda:
        ENV
    shell:
        "galcat report --config-json {params.config:q}"
        " --catalogue {input.catalogue} --output {output.html}"
        " --figures {output.figures} --analysis-dir {params.analysis_dir} 2> {log}"
