# release: a dated, immutable copy of the catalogue with a manifest; the
# 'latest' pointer is switched only once the release is complete. The output is
# a copy of the manifest beside the release (written last), not the release
# itself: Snakemake deletes an output before rerunning its job, and a rebuild of
# the same date must not delete the release it replaces (galcat.release).


rule release:
    input:
        parquet=f"{OUT}/catalogue.parquet",
        fits=f"{OUT}/catalogue.fits",
        votable=f"{OUT}/catalogue.vot",
        html=f"{OUT}/report.html",
    output:
        manifest=f"{OUT}/releases/{{date}}.manifest.json",
    wildcard_constraints:
        date=r"\d{4}-\d{2}-\d{2}",
    params:
        releases_dir=lambda wildcards, output: os.path.dirname(output.manifest),
    log:
        f"{LOGS}/release/{{date}}.log",
    conda:
        ENV
    shell:
        "galcat release --releases-dir {params.releases_dir}"
        " --date {wildcards.date} --catalogue {input.parquet}"
        " --files {input.parquet} {input.fits} {input.votable} {input.html} 2> {log}"
