"""gpuseg: segment images by clustering their pixels with exact DBSCAN, on CUDA GPUs and on CPUs."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "dbscan",
    "dbscan_images",
    "load_image",
    "pixel_features",
    "segment",
    "suggest_eps",
    "GpusegError",
]

if TYPE_CHECKING:
    from gpuseg.cluster import dbscan
    from gpuseg.errors import GpusegError
    from gpuseg.features import pixel_features
    from gpuseg.image_batch import dbscan_images
    from gpuseg.io import load_image
    from gpuseg.pipeline import segment
    from gpuseg.suggest import suggest_eps

_LAZY = {
    "dbscan": "gpuseg.cluster",
    "GpusegError": "gpuseg.errors",
    "dbscan_images": "gpuseg.image_batch",
    "pixel_features": "gpuseg.features",
    "load_image": "gpuseg.io",
    "segment": "gpuseg.pipeline",
    "suggest_eps": "gpuseg.suggest",
}


def __getattr__(name: str):
    # Imported on first use, so `import gpuseg` (and `gpuseg --help`) stays instant.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gpuseg' has no attribute {name!r}")
