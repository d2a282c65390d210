"""The science analyses: merger fraction, mass–metallicity relation, latent space, r50
validation and the seed papers' table.

Each reads the catalogue only (never the networks; a model's predictions are its
``nn_{model}_*`` columns) and writes its numbers as JSON and its figures as PNG under
``analysis/`` beside the catalogue, through a ``run_*`` function that a ``galcat``
subcommand and a rule of ``workflow/rules/analysis.smk`` call.

Modules: `galcat.analysis.merger`, `galcat.analysis.mzr`, `galcat.analysis.latent`,
`galcat.analysis.r50`, `galcat.analysis.seeds`; shared helpers in
`galcat.analysis.common`.
"""

__all__ = ["FIGURES"]

#: Every analysis by name and its figures: it writes ``analysis/{name}.json`` and
#: ``analysis/{figure}.png`` for each figure (captions: ``workflow/report/{figure}.rst``).
FIGURES: dict[str, list[str]] = {
    "merger_fraction": ["merger_fraction", "merger_selection"],
    "mzr": ["mzr"],
    "r50_validation": ["r50_validation", "r50_outliers"],
    "latent_space": ["latent_space"],
    "seed_papers": [],
}
