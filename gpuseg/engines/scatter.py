"""Scatter-min on NumPy and CuPy arrays, shared by the cell engine and the merge of identical rows."""

from __future__ import annotations

import numpy as np


def scatter_min(xp, target, index, values) -> None:
    """target[index] = min(target[index], values), with repeated indices (in place)."""
    if xp is np:
        np.minimum.at(target, index, values)
    elif index.shape[0]:
        from gpuseg.engines.gpu_common import THREADS_1D, blocks_1d, scatter_min_kernel

        scatter_min_kernel[blocks_1d(index.shape[0]), THREADS_1D](target, index, values)
