"""gpuseg: segment images by clustering their pixels with exact DBSCAN, on CUDA GPUs and on CPUs.

The public API, each imported on first use (so that ``import gpuseg`` and ``gpuseg --help`` stay instant):

- :func:`segment`: an image's labels, pictures and report; :class:`SegmentOptions` holds its options;
- :func:`segment_many`: many images (a folder, a Dask cluster, chunked gigapixel images), written to disk;
- :func:`dbscan`, :func:`dbscan_images`: DBSCAN on feature rows, and on a stack of same-sized images;
- :func:`pixel_features`, :func:`load_image`, :func:`suggest_eps`, :func:`save_outputs`;
- :data:`PARAMS`: every parameter, its default and the values it takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpuseg._core.cache import use_user_cache
from gpuseg._core.version import __version__

_LAZY = {
    "dbscan": "gpuseg.engines.run",
    "dbscan_images": "gpuseg.scale.stack",
    "expand_inputs": "gpuseg.scale.inputs",
    "load_image": "gpuseg.io.read",
    "pixel_features": "gpuseg.features",
    "save_outputs": "gpuseg.segmentation.outputs",
    "segment": "gpuseg.segmentation.pipeline",
    "segment_chunked": "gpuseg.scale.chunked.run",
    "segment_many": "gpuseg.scale.many",
    "suggest_eps": "gpuseg.tuning.suggest",
    "OutputOptions": "gpuseg.options",
    "SegmentOptions": "gpuseg.options",
    "SegmentResult": "gpuseg.segmentation.pipeline",
    "PARAMS": "gpuseg.params",
    "GpusegError": "gpuseg.errors",
}
__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from gpuseg.engines.run import dbscan as dbscan
    from gpuseg.errors import GpusegError as GpusegError
    from gpuseg.features import pixel_features as pixel_features
    from gpuseg.io.read import load_image as load_image
    from gpuseg.options import OutputOptions as OutputOptions
    from gpuseg.options import SegmentOptions as SegmentOptions
    from gpuseg.params import PARAMS as PARAMS
    from gpuseg.scale.chunked.run import segment_chunked as segment_chunked
    from gpuseg.scale.inputs import expand_inputs as expand_inputs
    from gpuseg.scale.many import segment_many as segment_many
    from gpuseg.scale.stack import dbscan_images as dbscan_images
    from gpuseg.segmentation.outputs import save_outputs as save_outputs
    from gpuseg.segmentation.pipeline import SegmentResult as SegmentResult
    from gpuseg.segmentation.pipeline import segment as segment
    from gpuseg.tuning.suggest import suggest_eps as suggest_eps

use_user_cache()  # compiled kernels go to the user's cache folder, whatever the install


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gpuseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
