# galcat: survey archives -> galaxy-morphology catalogues.
# Thin entry point: config, validation, includes and the final targets.
# The science lives in src/galcat; each stage has its own file in workflow/rules.

import os

from snakemake.utils import min_version

min_version("9.0")


# The default config sits beside this file, whatever the working directory.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# Snakemake's own report (snakemake --report report.zip): this text, then every output
# marked with report() and its caption in workflow/report/.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# Light rules run on the submit host even under a cluster executor; the query
# also needs the network, which compute nodes often lack.
localrules:
    all,
    query_catalog,
    plan_shards,
    catalogue,
    report,
    release,
    merger_fraction,
    mzr,
    r50_validation,
    latent_space,
    seed_papers,



include: "workflow/rules/query.smk"
include: "workflow/rules/cutouts.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/catalogue.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/release.smk"


rule all:
    input:
        get_final_outputs(),
    default_target: True
