"""Union-find on the CPU, shared by the exact engines.

Links always hang the larger root under the smaller one, so a component's root is its smallest index:
that is what numbers clusters in scikit-learn's order (by smallest core index) without a sort.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from gpuseg.engines import device_helpers as helpers

find = helpers.for_cpu(helpers.find)


@njit(inline="always", cache=True)
def union(parent, a, b):
    """Join the sets of ``a`` and ``b``; the smaller root becomes the root."""
    a = find(parent, a)
    b = find(parent, b)
    if a < b:
        parent[b] = a
    elif b < a:
        parent[a] = b


@njit(cache=True, nogil=True)
def merge_window(parent, offset, roots):
    """Join, in the global ``parent``, each pixel of a window (global index ``offset + i``) with its
    root in the window (``roots[i]``, window index, -1 for non-members)."""
    for i in range(roots.shape[0]):
        r = roots[i]
        if r >= 0 and r != i:
            union(parent, offset + i, offset + r)


@njit(parallel=True, cache=True, nogil=True)
def flatten_roots(parent, is_member):
    """Root of every member (-1 for the others), reading ``parent`` only, so safe in parallel."""
    roots = np.full(parent.shape[0], -1, dtype=parent.dtype)
    for i in prange(parent.shape[0]):
        if is_member[i]:
            r = parent[i]
            while parent[r] != r:
                r = parent[r]
            roots[i] = r
    return roots


@njit(cache=True, nogil=True)
def number_components(parent, is_member):
    """Cluster number of every member (-1 for the others), in one pass and without temporaries.

    Every link points to a smaller index (roots hang under smaller roots; path halving only shortens), so
    ``parent[i] <= i``: walking i upwards, a member's parent is numbered before it, and a root (its own
    parent) starts the next cluster number, in order of smallest index as scikit-learn numbers them.
    """
    labels = np.empty(parent.shape[0], dtype=np.int64)
    count = 0
    for i in range(parent.shape[0]):
        if not is_member[i]:
            labels[i] = -1
        elif parent[i] == i:
            labels[i] = count
            count += 1
        else:
            labels[i] = labels[parent[i]]
    return labels


def number_by_root(roots, xp=np):
    """Cluster number of every member: roots are the smallest indices, so cumulative counts of roots give
    the numbering by smallest index. Non-members (root -1) get -1. Works on NumPy and CuPy arrays."""
    index = xp.arange(roots.shape[0], dtype=roots.dtype)
    is_root = roots == index
    number = xp.cumsum(is_root, dtype=xp.int64) - 1
    return xp.where(roots >= 0, number[xp.maximum(roots, 0)], -1)
