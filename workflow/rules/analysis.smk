# analyses: the science of the catalogue (galcat.analysis), each reading the catalogue
# only and writing analysis/{name}.json and its figures, marked for Snakemake's report
# with captions in workflow/report/{figure}.rst.


rule merger_fraction:
    input:
        catalogue=f"{OUT}/catalogue.parquet",
    output:
        json=f"{OUT}/analysis/merger_fraction.json",
        png=[analysis_figure(f) for f in ANALYSIS_FIGURES["merger_fraction"]],
    params:
        config=get_analysis_config("merger_fraction"),
    log:
        f"{LOGS}/analysis/merger_fraction.log",
    benchmark:
        f"{BENCH}/analysis/merger_fraction.tsv"
    conda:
        ENV
    shell:
        "galcat merger-fraction --config-json {params.config:q} --catalogue {input.catalogue}"
        " --output-json {output.json} --output-png {output.png} 2> {log}"


rule mzr:
    input:
        catalogue=f"{OUT}/catalogue.parquet",
    output:
        json=f"{OUT}/analysis/mzr.json",
        png=analysis_figure("mzr"),
    params:
        config=get_analysis_config("mzr"),
    log:
        f"{LOGS}/analysis/mzr.log",
    benchmark:
        f"{BENCH}/analysis/mzr.tsv"
    conda:
        ENV
    shell:
        "galcat mzr --config-json {params.config:q} --catalogue {input.catalogue}"
        " --output-json {output.json} --output-png {output.png} 2> {log}"


rule r50_validation:
    input:
        catalogue=f"{OUT}/catalogue.parquet",
        # the worst outliers are shown as cutouts
        cutouts=get_cutouts,
    output:
        json=f"{OUT}/analysis/r50_validation.json",
        png=[analysis_figure(f) for f in ANALYSIS_FIGURES["r50_validation"]],
    params:
        config=get_analysis_config("r50_validation"),
    log:
        f"{LOGS}/analysis/r50_validation.log",
    benchmark:
        f"{BENCH}/analysis/r50_validation.tsv"
    conda:
        ENV
    shell:
        "galcat r50-validation --config-json {params.config:q} --catalogue {input.catalogue}"
        " --cutouts {input.cutouts} --output-json {output.json} --output-png {output.png}"
        " 2> {log}"


rule latent_space:
    input:
        catalogue=f"{OUT}/catalogue.parquet",
    output:
        json=f"{OUT}/analysis/latent_space.json",
        png=analysis_figure("latent_space"),
    params:
        config=get_analysis_config("latent_space"),
    log:
        f"{LOGS}/analysis/latent_space.log",
    benchmark:
        f"{BENCH}/analysis/latent_space.tsv"
    conda:
        ENV
    shell:
        "galcat latent-space --config-json {params.config:q} --catalogue {input.catalogue}"
        " --output-json {output.json} --output-png {output.png} 2> {log}"


rule seed_papers:
    input:
        catalogue=f"{OUT}/catalogue.parquet",
        analyses=[f"{OUT}/analysis/{name}.json" for name in ANALYSIS_FIGURES
                  if name != "seed_papers"],
    output:
        json=f"{OUT}/analysis/seed_papers.json",
    params:
        config=get_analysis_config("seed_papers"),
    log:
        f"{LOGS}/analysis/seed_papers.log",
    benchmark:
        f"{BENCH}/analysis/seed_papers.tsv"
    conda:
        ENV
    shell:
        "galcat seed-papers --config-json {params.config:q} --catalogue {input.catalogue}"
        " --analyses {input.analyses} --output-json {output.json} 2> {log}"
