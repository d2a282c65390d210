"""Partial reruns: after a config edit Snakemake reruns exactly the rules whose
params changed and what is downstream of them, and nothing else.

A stage added later joins these tests by declaring its params and adding one
row to CHANGES; the expected job set is derived from the rule graph.
"""

from __future__ import annotations

import pytest

from tests.conftest import TINY, deep_update, jobs_in, rule_graph, snakemake

pytestmark = pytest.mark.slow
SHARDS = {"s000000", "s000001", "s000002"}

#: (config edit, the rules that read the edited key through their params)
CHANGES = [
    ({"segment": {"nsigma": 2.0}}, {"segment"}),
    ({"segment": {"method": "watershed"}}, {"segment"}),
    ({"measure": {"half_mass": False}}, {"measure"}),
    ({"synthetic": {"psf_fwhm_r": 1.4}}, {"query_catalog", "fetch_cutouts"}),
    # the merger selection is also where the latent plane and the seed table mark mergers
    ({"analysis": {"merger": {"threshold": 0.6}}},
     {"merger_fraction", "latent_space", "seed_papers"}),
    ({"analysis": {"mzr": {"median_bin_dex": 0.25}}}, {"mzr"}),
]


def downstream(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    seen, todo = set(start), list(start)
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.fixture(scope="module")
def graph(tiny_run):
    return rule_graph(tiny_run, TINY)


def expected_jobs(rules: set[str]) -> set[tuple[str, str | None]]:
    per_shard = {"fetch_cutouts", "segment", "measure", "predict", "predict_pixels"}
    jobs = set()
    for rule in rules:
        if rule in per_shard:
            jobs |= {(rule, shard) for shard in SHARDS}
        else:
            jobs.add((rule, None))
    return jobs


def downstream_jobs(graph: dict[str, set[str]], readers: set[str]) -> set[tuple[str, str | None]]:
    """The jobs downstream of ``readers``. One rule, ``train``, holds every model, and
    only some read `measure`'s features (r50, gz2: their inputs): after a re-measurement
    those retrain and predict again, but what follows the other models' training (the
    pixel model's ``predict_pixels``) does not, so the rule graph's measure -> train edge
    is not followed further."""
    pruned = {rule: nxt - {"train"} if rule == "measure" else nxt for rule, nxt in graph.items()}
    rules = downstream(pruned, readers)
    if "measure" in rules:
        rules.add("train")
    return expected_jobs(rules)


def _case_id(value) -> str:
    # a set's order follows the process's string hashing: sorted, the id is the same in
    # every pytest-xdist worker, which must collect identical test ids
    return str(sorted(value)) if isinstance(value, set) else str(value)


@pytest.mark.parametrize(("edit", "readers"), CHANGES, ids=_case_id)
def test_a_changed_setting_reruns_its_stage_and_downstream_only(tiny_run, graph, edit, readers):
    proc = snakemake(tiny_run, deep_update(TINY, edit), "-n")
    planned = jobs_in(proc.stdout)
    assert planned == downstream_jobs(graph, readers)


def test_downstream_change_refetches_nothing(tiny_run):
    proc = snakemake(tiny_run, deep_update(TINY, {"segment": {"n_pixels": 7}}), "-n")
    planned = jobs_in(proc.stdout)
    assert planned and not {job for job in planned if job[0] in {"fetch_cutouts", "query_catalog"}}


def test_nothing_changed_nothing_runs(tiny_run):
    proc = snakemake(tiny_run, TINY, "-n")
    assert jobs_in(proc.stdout) == set()


@pytest.mark.parametrize(
    "edit",
    [
        {"dask": {"workers": 1, "scheduler": "threads", "objects_per_task": 3}},
        {"measure": {"half_mass_min_snr": 10, "r50_model_extent": 8}},  # 10.0, 8.0 as ints
    ],
    ids=["execution settings", "number format"],
)
def test_execution_and_number_format_edits_run_nothing(tiny_run, edit):
    proc = snakemake(tiny_run, deep_update(TINY, edit), "-n")
    assert jobs_in(proc.stdout) == set()


def test_comment_and_formatting_edits_run_nothing(tiny_run):
    text = (
        "# the same settings, written differently\n"
        "synthetic: {cutout_size: 64,   n_objects: 12}   # flow style\n"
        "dask:\n"
        "    objects_per_task: 2\n"
        "sharding:\n"
        "    objects_per_shard: 4  # unchanged\n"
        "models: {sersic: {injections: 16},\n"
        "         gz2: {residual_map: true}}\n"
    )
    path = tiny_run / "reformatted.yaml"
    path.write_text(text)
    proc = snakemake(tiny_run, None, "-n", "--configfile", str(path))
    assert jobs_in(proc.stdout) == set()
