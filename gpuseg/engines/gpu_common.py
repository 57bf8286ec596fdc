"""What the GPU engines share: moving features to the device, launch sizes, and lock-free union-find.

Kernels are numba-cuda ``@cuda.jit`` functions; they take CuPy arrays on a GPU, and NumPy arrays under
numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which is how the test suite checks their logic on
machines without a GPU. ``xp`` is the array module of the arrays: CuPy or NumPy.
"""

from __future__ import annotations

from numba import config

from gpuseg.engines import device_helpers as helpers
from gpuseg.engines.device_helpers import numba_cuda

cuda = numba_cuda()

SIMULATED = bool(getattr(config, "ENABLE_CUDASIM", 0))  # (set from NUMBA_ENABLE_CUDASIM at import)
THREADS_1D = 32 if SIMULATED else 256
THREADS_2D = (8, 4) if SIMULATED else (32, 8)


def blocks_1d(n: int) -> int:
    return max(1, (n + THREADS_1D - 1) // THREADS_1D)


def blocks_2d(height: int, width: int) -> tuple[int, int]:
    tx, ty = THREADS_2D
    return max(1, (width + tx - 1) // tx), max(1, (height + ty - 1) // ty)


def features_to_device(features):
    """The same features with their arrays in GPU memory (CuPy)."""
    import cupy

    return features.map_arrays(cupy.asarray)


find = helpers.for_cuda(helpers.find)


@cuda.jit(device=True, inline=True)
def union(parent, a, b):
    """Join the sets of ``a`` and ``b``: hang the larger root under the smaller with compare-and-swap,
    retrying when another thread moved the root first (ECL-CC style hooking)."""
    while True:
        ra = find(parent, a)
        rb = find(parent, b)
        if ra == rb:
            return
        if ra < rb:
            ra, rb = rb, ra
        if cuda.atomic.cas(parent, ra, ra, rb) == ra:
            return


@cuda.jit(device=True, inline=True)
def union_from(parent, rp, q):
    """Join ``q``'s set with the set whose (possibly outdated) root is ``rp``; return a root of the joined
    set to pass to the next call. A pixel looks up its own root once for all its neighbours: linking a
    root under any member of the set is still correct, and an outdated ``rp`` is refreshed when its
    compare-and-swap fails."""
    while True:
        rq = find(parent, q)
        if rq == rp:
            return rp
        if rp < rq:
            if cuda.atomic.cas(parent, rq, rq, rp) == rq:
                return rp
        elif cuda.atomic.cas(parent, rp, rp, rq) == rp:
            return rq
        rp = find(parent, rp)


@cuda.jit
def flatten_roots(parent, member, roots):
    """roots[i] = root of i for members, -1 for the others."""
    i = cuda.grid(1)
    if i < parent.shape[0]:
        roots[i] = find(parent, i) if member[i] else -1


@cuda.jit
def scatter_min_kernel(target, index, values):
    """target[index[i]] = min(target[index[i]], values[i]) for every i, with atomics."""
    i = cuda.grid(1)
    if i < index.shape[0]:
        cuda.atomic.min(target, index[i], values[i])


@cuda.jit
def _sum_runs(values, start, out):
    c = cuda.grid(1)
    if c < out.shape[0]:
        total = 0.0
        for i in range(start[c], start[c + 1]):
            total += values[i]
        out[c] = total


def sum_runs(values, start, xp):
    """``out[c] = values[start[c]] + ... + values[start[c + 1] - 1]``, added one by one in that order, as the
    CPU engines add: exact whatever the total (no difference of prefix sums) and the same on every run (no
    atomics)."""
    out = xp.empty(start.shape[0] - 1, dtype=xp.float64)
    if out.shape[0]:
        _sum_runs[blocks_1d(out.shape[0]), THREADS_1D](values, start, out)
    return out
