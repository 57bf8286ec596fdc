"""The memory a segmentation will take, predicted from the image's header before anything is decoded, and the
refusal of a run that would not fit."""

from __future__ import annotations

import os

import numpy as np

from gpuseg._core.memory import check_memory, predicted_memory
from gpuseg.io.read import read_header
from gpuseg.options import SegmentOptions


def check_run_memory(
    image_or_path,
    options: SegmentOptions | None = None,
    *,
    pictures: int = 0,
    explain: bool = False,
) -> int:
    """Predict the peak memory of segmenting an image with ``options`` (from its header, for a path) and writing
    ``pictures`` pictures (and the explain panel); return it, or raise before any work when it exceeds
    ``options.max_memory`` (default: the memory available).

    Raises
    ------
    MemoryLimitError
        The run would need more memory than it may take.
    ImageError
        A path whose header cannot be read.
    """
    options = options or SegmentOptions()
    if isinstance(image_or_path, (str, os.PathLike)):
        header = read_header(image_or_path)
        pixels, channels, itemsize, name = header.pixels, header.channels, header.itemsize, str(image_or_path)
        decode = True
    else:
        image = image_or_path if hasattr(image_or_path, "dtype") else np.asarray(image_or_path)
        shape = image.shape + (1,) * max(0, 2 - image.ndim)
        pixels, channels = shape[0] * shape[1], shape[2] if len(shape) == 3 else 1
        itemsize, name, decode = image.dtype.itemsize, "the image", False
    color, position = options.color, options.xy_scale is not None
    need = predicted_memory(
        pixels, channels=channels, itemsize=itemsize, color=color, position=position, decode=decode,
        pictures=pictures, explain=explain,
    )  # fmt: skip
    what = f"{name}: segmenting {pixels:,} pixels ({color}{' + position' if position else ', colour only'})"
    if pictures:
        what += f" and writing {pictures} picture{'s' if pictures > 1 else ''}"
    hint = " (or color='rgb', which needs less)" if color == "lab" else ""
    check_memory(need, what, options.max_memory, hint=hint)
    return need
