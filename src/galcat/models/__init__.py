"""galcat's networks: one training platform, a registry of model families.

The wing of the package that imports torch (the rest of galcat never does).
Families (`galcat.models.families`): ``r50`` (multi-band cutout -> half-mass
radius), ``gz2`` (colour cutout -> 37 Galaxy Zoo 2 vote fractions) and
``metallicity`` (colour cutout -> 12 + log(O/H)). The platform:

* `galcat.models.data` — splits by a hash of object_id, a Dataset over the Zarr
  shards read in whole chunks, the dihedral augmentation, the normalisation fit;
* `galcat.models.registry` — `Family` and the registry;
* `galcat.models.module` — the one LightningModule (a shared train/val/test step);
* `galcat.models.train` — `train_model` (Lightning's Trainer: checkpoints,
  resume, early stopping, LR on plateau, AMP on GPU, DDP, SLURM requeue);
* `galcat.models.predict` — `predict_shard` (batched, eval mode, TTA);
* `galcat.models.baselines`, `galcat.models.evaluate` — baselines and
  ``metrics.json`` on the test split.

`galcat.models._torch_compat.import_torchvision` makes torchvision (and so
Lightning and torchmetrics) importable beside the CPU build of torch; it runs
only where they are needed (training, ResNet-18), so that a ``predict`` job
starts without them.
"""

import os

# OpenMP threads that spin while they wait make torch on a shared or busy CPU
# (other jobs, the data-loader workers) 10-20 times slower: 11 against 240 images/s
# measured for the r50 network on 2 busy cores. Passive waiting costs little on an
# idle machine. libgomp reads it when torch loads, so it is set before; a value the
# user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from galcat.models import families  # noqa: E402, F401, I001  (registers the families)
from galcat.models.registry import FAMILIES, Family, Output, get_family, register  # noqa: E402

__all__ = ["FAMILIES", "Family", "Output", "get_family", "register"]
