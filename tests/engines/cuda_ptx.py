"""Compile every CUDA kernel of gpuseg for a real GPU target (PTX for compute capability 9.0), without a GPU.

numba's CUDA simulator runs the kernels' logic as Python; this checks what the simulator cannot: that each
kernel, with the argument types the engines launch it with, type-checks and compiles for the device (shared
arrays, atomics, inlined helpers). Run by tests/engines/test_cuda_compile.py in a process without the simulator;
needs NVIDIA's NVVM and NVRTC libraries (the nvidia-cuda-nvcc and nvidia-cuda-nvrtc wheels of the test
extra), not a driver.
"""

from __future__ import annotations

import sys
import types

import numpy as np

CC = (9, 0)


def _compile_for_cc():
    """Device functions are compiled for the current device's compute capability; there is none here, so
    name the target's."""
    import numba.cuda.dispatcher as dispatcher

    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=CC)


def _ptx(kernel, *args) -> None:
    from numba import cuda, typeof

    cuda.compile_ptx(kernel.py_func, tuple(typeof(a) for a in args), cc=CC)


def grid_kernels() -> int:
    from gpuseg.engines.grid.cuda import kernels

    n = 0
    h, w = 6, 7
    for codes in (True, False):
        for channels, radius, tiled in ((3, 2, True), (4, 2, False), (1, 30, True)):
            k = kernels(codes, channels, radius, tiled)
            colors = np.zeros((h, w, channels), np.uint8 if codes else np.float64)
            lut, xs, ys = np.zeros(256), np.zeros(w), np.zeros(h)
            mask, core = np.ones((h, w), np.bool_), np.ones((h, w), np.bool_)
            weights, dy, dx = np.ones((h, w)), np.zeros(4, np.int64), np.zeros(4, np.int64)
            tile_rows, row0, eps2 = h, 0, 0.01
            _ptx(k.count_neighbours, colors, lut, mask, True, weights, False, xs, ys, tile_rows, row0, dy, dx, eps2,
                 5.0, 5.0, core)  # fmt: skip
            for union_kernel in (k.union_within_blocks, k.union_across_blocks):
                for index in (np.int32, np.int64):
                    parent = np.zeros(h * w, index)
                    _ptx(union_kernel, colors, lut, core, xs, ys, tile_rows, row0, dy, dx, eps2, parent)
            todo, labels = np.zeros(3, np.int64), np.zeros(h * w, np.int64)
            _ptx(k.attach_borders, colors, lut, core, xs, ys, tile_rows, row0, dy, dx, eps2, todo, labels)
            n += 6
    return n


def cell_kernels() -> int:
    from gpuseg.engines.cells import cuda as k

    i64 = np.zeros(4, np.int64)
    coords, offsets = np.zeros((4, 3), np.int64), np.zeros((5, 3), np.int64)
    points, weights, core = np.zeros((8, 3)), np.ones(8), np.ones(8, np.bool_)
    table = np.zeros(10, np.int32)
    _ptx(k.count_neighbour_cells, coords, i64, table, i64[:3], i64[:3], offsets, i64)
    _ptx(k.fill_neighbour_cells, coords, i64, table, i64[:3], i64[:3], offsets, i64, i64)
    _ptx(k.count_neighbours, points, weights, i64, i64, i64, i64, weights, 0.01, 5.0, 5.0, core)
    _ptx(k.union_cores, points, core, i64, coords, i64, i64, core, True, 0.01, i64)
    _ptx(k.attach_borders, points, core, i64, i64, i64, i64, i64, 0.01, i64)
    return 5


def common_kernels() -> int:
    from gpuseg.engines import gpu_common as k

    for index in (np.int32, np.int64):
        parent = np.zeros(5, index)
        _ptx(k.flatten_roots, parent, np.ones(5, np.bool_), parent)
    _ptx(k.scatter_min_kernel, np.zeros(4, np.int64), np.zeros(4, np.int64), np.zeros(4, np.int64))
    _ptx(k._sum_runs, np.zeros(4), np.zeros(3, np.int64), np.zeros(2))
    return 4


def main() -> int:
    _compile_for_cc()
    n = grid_kernels() + cell_kernels() + common_kernels()
    print(f"compiled {n} kernel specialisations to PTX for compute capability {CC[0]}.{CC[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
