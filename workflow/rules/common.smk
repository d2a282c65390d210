# Shared settings and the input functions (get_*) of every rule.

import json

from snakemake.utils import validate

from snakemake.logging import logger

from galcat.config import (
    check_config_files,
    config_hash,
    injection_survey,
    keys_evaluation_reads,
    keys_training_ignores,
    measured_inputs,
    run_notes,
    trained_models,
    validate_config,
)
from galcat.labels import cut_keys
from galcat.sharding import shard_names
# Every analysis (analysis.smk) and its figures: analysis/{name}.json, analysis/{figure}.png.
from galcat.analysis import FIGURES as ANALYSIS_FIGURES

# Our own validation first: its message names the offending key path (and a key
# given twice in a file, which Snakemake's YAML loader keeps silently). Then
# Snakemake's, which also fills in the schema's defaults.
check_config_files(*workflow.configfiles)
validate_config(config)
validate(config, schema="../../config/schema.yaml")
# Settings the survey's bands make impossible are said once, here, not on every object.
for note in run_notes(config):
    logger.warning(f"galcat: {note}")

SURVEY = config["survey"]
OUT = f"{config['results']}/{SURVEY}"
LOGS = f"{OUT}/logs"
BENCH = f"{OUT}/benchmarks"
ENV = "../../envs/galcat.yaml"


wildcard_constraints:
    shard=r"s\d{6}",
    model=r"[a-z][a-z0-9_]{0,31}",


def as_json(sections):
    """The config sections a rule reads, as the stable JSON string in its params.

    Rules take it through an input function (get_*_config), never as a plain
    string: Snakemake would read a config value such as "{object_id}.fits" as
    a wildcard."""
    return json.dumps(sections, sort_keys=True, separators=(",", ":"))


def get_shards():
    """Shard names. Known from the config for the synthetic survey; for archive
    surveys, only after the plan_shards checkpoint has read the object table."""
    per_shard = config["sharding"]["objects_per_shard"]
    if SURVEY == "synthetic":
        return shard_names(config["synthetic"]["n_objects"], per_shard)
    with open(checkpoints.plan_shards.get().output.shards) as fh:
        return [line.strip() for line in fh if line.strip()]


def get_shard_size(shard):
    """Objects in one shard (synthetic: from the config; archive: from the table)."""
    per_shard = config["sharding"]["objects_per_shard"]
    if SURVEY == "synthetic":
        index = int(shard[1:])
        return min(per_shard, config["synthetic"]["n_objects"] - index * per_shard)
    return None


def get_fetch_input(wildcards):
    """The shard's own object table. The synthetic survey makes a shard's rows
    from the config alone, so its fetch jobs depend on nothing: growing the
    survey or rerunning the query leaves finished shards untouched."""
    if SURVEY == "synthetic":
        return {}
    return {"objects": f"{OUT}/objects/{wildcards.shard}.parquet"}


def params_of(*sections, **extra):
    """The named config sections (and extra values) as one rule's params JSON."""
    return as_json({**{name: config[name] for name in sections}, **extra})


# The archive transport (time-outs, retries, off-image policy) shapes what every
# survey but the synthetic one stages, so its edits rerun query and fetch.
SURVEY_SECTIONS = ("survey", SURVEY) if SURVEY == "synthetic" else ("survey", SURVEY, "archive")

# How a job runs, not what it writes (serial output equals parallel output, by
# test): passed beside the params, so an edit reruns nothing.
DASK_JSON = as_json(config["dask"])


#: local.objects: detect: the objects come from the detect rule.
DETECT_MODE = SURVEY == "local" and config["local"]["objects"] == "detect"
#: The keys of the local section that detection reads: the images and how to read
#: them, not the cutout settings (an edit of those reruns no detection).
DETECT_KEYS = ("objects", "bands", "images", "noise", "mask", "psf", "psf_stamp_size",
               "zeropoint", "pixel_scale", "detection")


def get_query_input(wildcards):
    return {"detections": f"{OUT}/detections.parquet"} if DETECT_MODE else {}


def get_query_config(wildcards):
    return params_of(*SURVEY_SECTIONS, "sharding")


def get_detect_config(wildcards):
    local = {key: config["local"][key] for key in DETECT_KEYS if key in config["local"]}
    return as_json({"survey": SURVEY, "local": local, "detect_band": config["detect_band"]})


def get_fetch_config(wildcards):
    # The survey size is not a fetch setting: growing the survey must leave
    # finished shards untouched. The shard's own object count stands in for it.
    survey_cfg = {k: v for k, v in config[SURVEY].items() if k != "n_objects"}
    return as_json(
        {
            **{name: config[name] for name in SURVEY_SECTIONS},
            SURVEY: survey_cfg,
            "sharding": config["sharding"],
            "shard_size": get_shard_size(wildcards.shard),
        }
    )


def get_segment_config(wildcards):
    return params_of("segment", "detect_band")


def get_measure_config(wildcards):
    return params_of("measure", "detect_band")


def get_config_hash():
    """Hash of every setting that shapes the catalogue: the release date is a label of
    the run, the dask section says how jobs run, and the analyses read the catalogue
    (an edit of theirs reruns them, never the catalogue), so none of them counts."""
    return config_hash({k: v for k, v in config.items()
                        if k not in ("release", "dask", "analysis")})


def get_report_config(wildcards):
    return params_of("survey", config_hash=get_config_hash())


def get_catalogue_config(wildcards):
    """The catalogue's settings: the survey and the colour -> M/L relation of the
    photometric stellar mass (the one measure uses for the half-mass radius)."""
    return as_json(
        {
            "survey": SURVEY,
            "measure": {"mass_to_light": config["measure"]["mass_to_light"]},
        }
    )


def get_config_hash_param(wildcards):
    return get_config_hash()


def get_features(wildcards):
    return expand(f"{OUT}/features/{{shard}}.parquet", shard=get_shards())


# --------------------------------------------------------------------- models
def get_models():
    """Names of the models this run trains (galcat.config.trained_models: the enabled
    ones, on a survey with their labels), in config order."""
    return trained_models(config)


#: Families whose predict job also writes per-pixel maps (rule predict_pixels).
PIXEL_FAMILIES = ("pixels",)


def _names_regex(names):
    # a pattern that matches nothing when there is no such model
    return "|".join(sorted(names)) if names else "(?!)"


def pixel_models_regex(pixel):
    """Wildcard pattern of the models whose family writes pixel maps (or the others)."""
    return _names_regex([name for name, entry in config["models"].items()
                         if (entry["family"] in PIXEL_FAMILIES) == pixel])


def get_model_pixelmaps(wildcards):
    """The pixel maps of every shard, for a model of a per-pixel family; else none."""
    if config["models"][wildcards.model]["family"] not in PIXEL_FAMILIES:
        return []
    return expand(f"{OUT}/pixelmaps/{wildcards.model}/{{shard}}.zarr", shard=get_shards())


def get_cutouts(wildcards):
    return expand(f"{OUT}/cutouts/{{shard}}.zarr", shard=get_shards())


def get_label_tables(wildcards):
    """The object tables the models learn their labels from, such that a nightly
    query that adds nothing retrains nothing. Archive surveys use the per-shard
    tables, rewritten only when a shard's rows change. The synthetic survey's one
    table is rewritten by every query, so its time stamp is ignored (ancient): its
    labels change only with the synthetic settings, which change the cutouts, and a
    new shard adds cutouts; either retrains."""
    if SURVEY == "synthetic":
        return [ancient(f"{OUT}/objects.parquet")]
    return expand(f"{OUT}/objects/{{shard}}.parquet", shard=get_shards())


def _model_entry(model, keys=None, drop=()):
    entry = config["models"][model]
    return {k: v for k, v in entry.items() if (keys is None or k in keys) and k not in drop}


SPLIT_KEYS = ("validation_fraction", "test_fraction", "split_seed")


def _label_sections(model):
    """The survey and the label cuts of the model's family that apply on it
    (galcat.labels.cut_keys): editing another survey's cut reruns nothing."""
    family = config["models"][model]["family"]
    keys = cut_keys(SURVEY, family)
    sections = {"survey": SURVEY}
    if keys:
        sections["labels"] = {family: {k: config["labels"][family][k] for k in keys}}
    return sections


def get_predict_objects(wildcards):
    """The object table(s) a predict job reads its per-object inputs from (the
    redshift: models.<name>.inputs); none for a model without such inputs. As for the
    labels, the synthetic survey's one table is ancient and an archive shard's own
    table is rewritten only when its rows change."""
    inputs = config["models"][wildcards.model].get("inputs") or ()
    measured = measured_inputs(config, wildcards.model)
    if not [name for name in inputs if name not in measured]:  # none read from the table
        return []
    if SURVEY == "synthetic":
        return [ancient(f"{OUT}/objects.parquet")]
    return [f"{OUT}/objects/{wildcards.shard}.parquet"]


def get_train_config(wildcards):
    # tta is read by predict only, huber_delta by point_estimate huber only: editing
    # them must not retrain (nor a galcat that adds such a key retrain every model)
    unread = keys_training_ignores(config["models"][wildcards.model])
    entry = _model_entry(wildcards.model, drop=unread)
    # injections are drawn with the synthetic survey's PSF and noise: its edits retrain
    synthetic = injection_survey(config, wildcards.model)
    drawn = {"synthetic": synthetic} if synthetic is not None else {}
    return as_json({
        "models": {wildcards.model: entry},
        "training": {k: config["training"][k] for k in SPLIT_KEYS},
        **_label_sections(wildcards.model),
        **drawn,
    })


def get_init_model(wildcards):
    """The synthetic survey's model of the same name, for a model fine-tuned from it
    (models.<name>.init: synthetic): an input, so a newer one reruns the training."""
    if config["models"][wildcards.model]["init"] != "synthetic":
        return []
    if SURVEY == "synthetic":
        raise ValueError(f"config key models.{wildcards.model}.init: 'synthetic' fine-tunes "
                         "a model of the synthetic survey on another survey; this run is "
                         "the synthetic survey's own (set it to none)")
    return [f"{config['results']}/synthetic/models/{wildcards.model}/model.pt"]


def get_init_args(wildcards, input):
    return f"--init-model {input.init}" if input.init else ""


def get_train_features(wildcards):
    """Every shard's features table, for a model with measured inputs (models.<name>.
    inputs: r50_mass...); none otherwise, so that re-measuring retrains only those."""
    return get_features(wildcards) if measured_inputs(config, wildcards.model) else []


def get_predict_features(wildcards):
    """The shard's features table, for a model with measured inputs; else none."""
    if not measured_inputs(config, wildcards.model):
        return []
    return [f"{OUT}/features/{wildcards.shard}.parquet"]


def _residual_map(model):
    return bool(config["models"][model].get("residual_map"))


def get_train_residuals(wildcards):
    """Every shard's residual maps, in the order of get_cutouts, for a model with
    models.<name>.residual_map; none otherwise."""
    if not _residual_map(wildcards.model):
        return []
    return expand(f"{OUT}/residuals/{{shard}}.zarr", shard=get_shards())


def get_predict_residuals(wildcards):
    """The shard's residual maps, for a model with models.<name>.residual_map; else none."""
    if not _residual_map(wildcards.model):
        return []
    return [f"{OUT}/residuals/{wildcards.shard}.zarr"]


def get_predict_config(wildcards):
    return as_json({"models": {wildcards.model: _model_entry(wildcards.model, ("family", "tta"))}})


def get_evaluate_config(wildcards):
    sections = {
        "survey": SURVEY,
        "models": {wildcards.model: _model_entry(
            wildcards.model, keys_evaluation_reads(config["models"][wildcards.model]))},
        "detect_band": config["detect_band"],
        **_label_sections(wildcards.model),
    }
    if SURVEY == "synthetic":
        sections["synthetic"] = {"mzr": config["synthetic"]["mzr"]}
    return as_json(sections)


def get_segmaps(wildcards):
    return expand(f"{OUT}/segmaps/{{shard}}.zarr", shard=get_shards())


def get_model_predictions(wildcards):
    return expand(f"{OUT}/predictions/{wildcards.model}/{{shard}}.parquet", shard=get_shards())


def get_predictions(wildcards):
    """Every enabled model's predictions of every shard (the catalogue joins them)."""
    return expand(
        f"{OUT}/predictions/{{model}}/{{shard}}.parquet", model=get_models(), shard=get_shards()
    )


def get_model_metrics():
    return expand(f"{OUT}/models/{{model}}/metrics.json", model=get_models())


def get_analysis_outputs(wildcards=None):
    """The analyses' JSON and PNG files under {OUT}/analysis: inputs of the report (so
    that it runs after them) and final targets (so that a finished tree plans them)."""
    return [
        path
        for name, figures in ANALYSIS_FIGURES.items()
        for path in [f"{OUT}/analysis/{name}.json",
                     *(f"{OUT}/analysis/{fig}.png" for fig in figures)]
    ]


def analysis_figure(name):
    """Figure ``name`` of an analysis, marked for Snakemake's report with its caption."""
    return report(
        f"{OUT}/analysis/{name}.png",
        caption=f"../report/{name}.rst",
        category="Analyses",
        labels={"figure": name.replace("_", " ")},
    )


#: The keys of the analysis section each analysis reads.
ANALYSIS_KEYS = {
    "merger_fraction": ("bootstrap", "seed", "merger"),
    "mzr": ("bootstrap", "seed", "split", "mzr"),
    "latent_space": ("latent", "merger"),
    "r50_validation": ("split", "r50"),
    "seed_papers": ("split", "merger"),
}


def get_analysis_config(name):
    """The params of analysis ``name``: the keys of the analysis section it reads, and
    the synthetic survey's MZR (the relation the MZR fit is compared with)."""

    def params(wildcards):
        sections = {"analysis": {k: config["analysis"][k] for k in ANALYSIS_KEYS[name]}}
        if name == "mzr" and SURVEY == "synthetic":
            sections["synthetic"] = {"mzr": config["synthetic"]["mzr"]}
        if name == "seed_papers":
            sections["models"] = {m: {"family": e["family"]} for m, e in config["models"].items()
                                  if e["enabled"]}
        return as_json(sections)

    return params


def get_final_outputs():
    outputs = [
        f"{OUT}/catalogue.parquet",
        f"{OUT}/catalogue.fits",
        f"{OUT}/catalogue.vot",
        f"{OUT}/report.html",
        # REPORT_FIGURES: report.smk, included after this file and before rule all
        *expand(f"{OUT}/figures/{{name}}.png", name=REPORT_FIGURES),
        *get_model_metrics(),
        *get_analysis_outputs(),
    ]
    if config.get("release"):
        outputs.append(f"{OUT}/releases/{config['release']}.manifest.json")
    return outputs
