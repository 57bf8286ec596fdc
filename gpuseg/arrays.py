"""Small helpers that work the same on NumPy and CuPy arrays (``xp`` is the array module)."""

from __future__ import annotations

import numpy as np


def scatter_min(xp, target, index, values) -> None:
    """target[index] = min(target[index], values), with repeated indices (in place)."""
    if xp is np:
        np.minimum.at(target, index, values)
    elif index.shape[0]:
        from gpuseg.engines.gpu_common import THREADS_1D, blocks_1d, scatter_min_kernel

        scatter_min_kernel[blocks_1d(index.shape[0]), THREADS_1D](target, index, values)


def array_module(array):
    """CuPy for a CuPy array, else NumPy (without importing CuPy)."""
    import sys

    return sys.modules["cupy"] if type(array).__module__.partition(".")[0] == "cupy" else np


def to_host(array):
    """A NumPy copy of a CuPy array; NumPy arrays as they are."""
    return array.get() if hasattr(array, "get") else array
