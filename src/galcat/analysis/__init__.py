"""The science analyses: merger fraction, mass–metallicity relation, latent space, r50
validation and the seed papers' table.

Each reads the catalogue only (never the networks; a model's predictions are its
``nn_{model}_*`` columns) and writes its numbers as JSON and its figures as PNG under
``analysis/`` beside the catalogue, through a ``run_*`` function that a ``galcat``
subcommand and a rule of ``workflow/rules/analysis.smk`` call.
"""

__all__ = ["ANALYSES"]

#: Analysis name -> "module:function" of its run_* entry point.
ANALYSES = {
    "merger_fraction": "galcat.analysis.merger:run_merger_fraction",
    "mzr": "galcat.analysis.mzr:run_mzr",
    "r50_validation": "galcat.analysis.r50:run_r50_validation",
    "latent_space": "galcat.analysis.latent:run_latent_space",
}
