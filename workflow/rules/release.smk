# release: a dated, immutable copy of the catalogue with a manifest; the
# 'latest' pointer is switched only once the release is complete.


rule release:
    input:
        parquet=f"{OUT}/catalogue.parquet",
        fits=f"{OUT}/catalogue.fits",
        html=f"{OUT}/report.html",
    output:
        release=directory(f"{OUT}/releases/{{date}}"),
    wildcard_constraints:
        date=r"\d{4}-\d{2}-\d{2}",
    params:
        releases_dir=lambda wildcards, output: os.path.dirname(output.release),
    log:
        f"{LOGS}/release/{{date}}.log",
    conda:
        ENV
    shell:
        "galcat release --releases-dir {params.releases_dir}"
        " --date {wildcards.date} --catalogue {input.parquet}"
        " --files {input.parquet} {input.fits} {input.html} 2> {log}"
