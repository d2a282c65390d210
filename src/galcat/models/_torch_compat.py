"""Make torchvision importable beside the CPU build of torch.

PyPI's torchvision 0.28.0 wheel is linked against the CUDA build of torch. Beside
``torch==2.13.0+cpu`` its compiled extension does not load, and its Python side
then fails at import with ``RuntimeError: operator torchvision::nms does not
exist`` (it registers fake kernels for ``nms``/``qnms``, whose schemas the
extension would have defined). Lightning and torchmetrics import torchvision, so
they fail too. galcat uses only torchvision's Python models (ResNet-18), which do
not need the extension: where the import fails this way, the two operator schemas
are defined here and the import is retried. Where torchvision imports cleanly (a
matching CUDA torch on a GPU machine) this module does nothing.

Every import of torchvision, Lightning or torchmetrics in galcat calls
`import_torchvision` first. It is a function, not an import side effect, because
torchvision pulls in ``torch._dynamo`` (about a second): a ``predict`` or
``evaluate`` job of a small network never needs it, and its start is most of
its cost.
"""

from __future__ import annotations

import sys

import torch

__all__ = ["TORCHVISION_SHIM", "import_lightning", "import_torchvision"]

#: True when the operator schemas had to be defined here (CPU torch beside a CUDA
#: torchvision wheel); False when torchvision imported as it is.
TORCHVISION_SHIM = False
# Kept at module level: a torch.library.Library drops its definitions when collected.
_LIBRARY: torch.library.Library | None = None


def _define_missing_operators() -> None:
    global _LIBRARY
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.define(
        "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
    )


def import_torchvision():
    """Import torchvision (defining its missing operators if needed); the module.

    Idempotent and cheap after the first call. Call it before importing
    Lightning or torchmetrics, which import torchvision themselves.
    """
    global TORCHVISION_SHIM
    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        # The failed import left half-initialised modules behind; drop them first.
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _define_missing_operators()
        import torchvision

        TORCHVISION_SHIM = True
    return torchvision


def import_lightning():
    """Import Lightning (which imports torchvision: the shim runs first); the module."""
    import_torchvision()
    import lightning

    return lightning
