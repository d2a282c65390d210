"""Throughput of the networks: Zarr loading rate beside training and inference rates.

For every model of the config (default: config/science.yaml's) it measures, in
images per second:

* loading: the training DataLoader alone (whole-chunk reads from the Zarr shards,
  binning, the dihedral augmentation, collation) with 0, 1 and 2 worker processes;
* training: forward, backward and optimiser step of the model's network on batches
  already in memory (the rate at which training consumes images);
* inference: eval-mode forward passes, without and with the 8-fold test-time
  averaging.

on the CPU with the given threads and, where CUDA is present, on the GPU. The goal
(issue 10): loading >= 3x the training consumption rate, with the loader a training
job of ``--threads`` cores runs (`galcat.models.train.loader_workers`: 1 worker
process on 2 cores), not the best of the three. The cutouts are rendered
into a temporary directory (synthetic survey, 64x64, 5 bands) unless --cutouts
points at staged shards. The default 2048 galaxies outnumber what a loader process
keeps decoded (`CutoutDataset`'s 32 chunks, 512 galaxies), so every epoch decodes
its chunks again, as in the science training of thousands of galaxies; 512 would
serve the second epoch from memory and flatter the loader.

    .venv/bin/python bench/model_throughput.py [--objects 2048] [--threads 2]

Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from galcat.config import load_config

ROOT = Path(__file__).resolve().parents[1]
GOAL_LOAD_OVER_TRAIN = 3.0


def render(n: int, tmp: Path) -> list[Path]:
    from galcat.stages import run_fetch

    per = 256
    config = load_config(overrides={"synthetic": {"n_objects": n},
                                    "sharding": {"objects_per_shard": per}})
    shards = [f"s{i:06d}" for i in range((n + per - 1) // per)]
    return [run_fetch({**config, "shard_size": min(per, n - i * per)}, None, s, tmp / f"{s}.zarr",
                      dask={**config["dask"], "scheduler": "synchronous"})
            for i, s in enumerate(shards)]


def dataset(cutouts, settings):
    from galcat.models.data import CutoutDataset, ShardIndex
    from galcat.store import CutoutReader

    readers = [CutoutReader(p) for p in cutouts]
    ids = np.concatenate([r.object_id for r in readers])
    return CutoutDataset(ShardIndex.build(readers, ids), np.zeros((len(ids), 1)),
                         bands=settings["bands"], bin=settings["bin"],
                         crop=settings.get("crop", 1.0))


def loading_rate(ds, settings, workers: int, epochs: int = 2) -> float:
    """Images per second of one training DataLoader over ``epochs`` epochs, after one
    untimed epoch (a training job starts its persistent workers once; with more
    galaxies than a worker keeps decoded, the timed epochs still decode every chunk)."""
    from galcat.models.data import ChunkBatchSampler, make_loader

    epoch = [0]
    sampler = ChunkBatchSampler(ds.index.chunk_key(), ds.index.object_id,
                                batch_size=settings["batch_size"], shuffle=True, augment=True,
                                seed=0, epoch=lambda: epoch[0])
    loader = make_loader(ds, sampler, workers=workers)
    for _ in loader:
        pass
    n = 0
    t0 = time.perf_counter()
    for epoch[0] in range(1, epochs + 1):
        for batch in loader:
            n += len(batch["image"])
    return n / (time.perf_counter() - t0)


def net_rates(settings, shape, device: str, *, steps: int) -> dict[str, float]:
    import torch

    from galcat.models.nets import DIHEDRAL
    from galcat.models.registry import build_net, get_family

    family = get_family(settings["family"])
    k = len(family.label_columns)
    net = build_net(settings["family"], settings, n_bands=shape[0], n_targets=k,
                    size=shape[-1]).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    b = settings["batch_size"]
    x = torch.rand(b, *shape, device=device) * 10
    y = torch.rand(b, k, device=device)
    # the per-object values beside the image (redshift, measurements): the head's cost
    extra = torch.rand(b, net.n_inputs, device=device) if net.n_inputs else None
    # what a loss may read beside the target (an encoder-decoder's reconstruction: the
    # image; the pixel model: its per-pixel arrays)
    batch = {"image": x, **{name: torch.zeros(b, *shape[1:], device=device)
                            for name in family.pixel_arrays}}

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def train_step():
        loss = family.loss(net(x, extra), y, batch, net)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        train_step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step()
    sync()
    out = {"train": steps * b / (time.perf_counter() - t0)}
    net.eval()
    with torch.no_grad():
        for tta in (False, True):
            codes = range(DIHEDRAL) if tta else (0,)
            t0 = time.perf_counter()
            for _ in range(steps):
                # as predict runs them: the stretch once, then each transform
                outs = [o for o, _ in net.forward_dihedral(x, extra, codes=codes)]
                if not family.pixel_output:  # a pixel map is averaged per pixel, not here
                    family.combine(outs)
            sync()
            out["infer_tta" if tta else "infer"] = steps * b / (time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "config" / "science.yaml"))
    ap.add_argument("--objects", type=int, default=2048, help="galaxies rendered (no --cutouts)")
    ap.add_argument("--cutouts", nargs="*", help="staged cutout shards to read instead")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8, help="timed batches per network rate")
    args = ap.parse_args()

    import torch

    from galcat.models._torch_compat import import_torchvision
    from galcat.models.train import loader_workers

    import_torchvision()  # the ResNet-18 rows need torchvision beside the CPU torch

    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    models = {n: e for n, e in config["models"].items() if e["enabled"]}
    with tempfile.TemporaryDirectory() as tmp:
        cutouts = args.cutouts or render(args.objects, Path(tmp))
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        rows = []
        workers = loader_workers(args.threads)
        for name, settings in models.items():
            ds = dataset(cutouts, settings)
            shape = tuple(ds.read_images(np.arange(1))[0].shape)
            load = {w: loading_rate(ds, settings, w) for w in sorted({0, 1, 2, workers})}
            for device in devices:
                rates = net_rates(settings, shape, device, steps=args.steps)
                rows.append({"model": name, "architecture": settings["architecture"],
                             "input": "x".join(map(str, shape)), "device": device,
                             "load_w0": load[0], "load_w1": load[1], "load_w2": load[2], **rates,
                             "load_workers": workers, "load_training": load[workers],
                             "load_over_train": load[workers] / rates["train"]})
    head = (f"{'model':<13}{'net':<10}{'input':<10}{'dev':<5}{'load w0':>9}{'w1':>8}{'w2':>8}"
            f"{'train':>8}{'infer':>8}{'+tta':>8}{'load/train':>11}")
    print(f"images per second ({args.threads} CPU threads; loading from Zarr, whole chunks; "
          f"load/train with the training job's {workers} loader worker(s))")
    print(head)
    for r in rows:
        print(f"{r['model']:<13}{r['architecture']:<10}{r['input']:<10}{r['device']:<5}"
              f"{r['load_w0']:9.0f}{r['load_w1']:8.0f}{r['load_w2']:8.0f}{r['train']:8.0f}"
              f"{r['infer']:8.0f}{r['infer_tta']:8.0f}{r['load_over_train']:11.1f}")
    ok = all(r["load_over_train"] >= GOAL_LOAD_OVER_TRAIN for r in rows)
    print(f"goal: loading >= {GOAL_LOAD_OVER_TRAIN:.0f}x training consumption on every device: "
          f"{'met' if ok else 'NOT met'}")
    print(json.dumps({"bench": "model_throughput", "threads": args.threads,
                      "gpu": torch.cuda.is_available(), "rows": [
                          {k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()}
                          for r in rows], "goal_loading_3x_training": ok}))


if __name__ == "__main__":
    main()
