"""GPU kernels of the pixel-grid engine: one thread per pixel for each stage, the same stages and the same
pair test as the CPU engine (``_grid_cpu``)."""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda, float64

from gpuseg.engines._unionfind import number_by_root
from gpuseg.engines.base import Job, require_nonnegative_weights
from gpuseg.engines.gpu_common import THREADS_1D, THREADS_2D, blocks_1d, blocks_2d, find, flatten_roots, union_from
from gpuseg.engines.grid import sample_labels
from gpuseg.engines.stencil import forward_half, stencil


@cuda.jit(device=True, inline=True)
def _codes_sqdiff(lut, a, b):
    d = lut[a] - lut[b]
    return d * d


@cuda.jit(device=True, inline=True)
def _values_sqdiff(lut, a, b):
    d = a - b
    return d * d


@functools.cache
def kernels(integer_codes: bool):
    """The stage kernels for colours held as integer codes (with a lookup table) or as float64 values."""
    sqdiff = _codes_sqdiff if integer_codes else _values_sqdiff

    @cuda.jit(device=True, inline=True)
    def pair_d2(colours, lut, xs, ys, y, x, yy, xx, eps2):
        d2 = 0.0
        for k in range(colours.shape[2]):
            d2 += sqdiff(lut, colours[y, x, k], colours[yy, xx, k])
        if d2 > eps2:
            return d2
        t = xs[xx] - xs[x]
        d2 += t * t
        t = ys[yy] - ys[y]
        return d2 + t * t

    @cuda.jit
    def count_neighbours(colours, lut, mask, masked, weights, weighted, xs, ys, dy, dx, eps2, min_samples, core):
        x, y = cuda.grid(2)
        h, w = colours.shape[0], colours.shape[1]
        if y >= h or x >= w:
            return
        if masked and not mask[y, x]:
            core[y, x] = False
            return
        total = weights[y, x] if weighted else 1.0
        if total < min_samples:
            for o in range(dy.shape[0]):
                yy = y + dy[o]
                xx = x + dx[o]
                if yy < 0 or yy >= h or xx < 0 or xx >= w or (masked and not mask[yy, xx]):
                    continue
                if pair_d2(colours, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
                    total += weights[yy, xx] if weighted else 1.0
                    if total >= min_samples:
                        break
        core[y, x] = total >= min_samples

    @cuda.jit
    def union_cores(colours, lut, core, xs, ys, dy, dx, eps2, parent):
        x, y = cuda.grid(2)
        h, w = colours.shape[0], colours.shape[1]
        if y >= h or x >= w or not core[y, x]:
            return
        rp = find(parent, y * w + x)
        for o in range(dy.shape[0]):
            yy = y + dy[o]
            xx = x + dx[o]
            if yy >= h or xx < 0 or xx >= w or not core[yy, xx]:
                continue
            if pair_d2(colours, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
                rp = union_from(parent, rp, yy * w + xx)

    @cuda.jit
    def attach_borders(colours, lut, core, xs, ys, dy, dx, eps2, todo, labels):
        """One thread per non-core sample (a compact list, so that warps do not idle on core pixels)."""
        i = cuda.grid(1)
        if i >= todo.shape[0]:
            return
        h, w = colours.shape[0], colours.shape[1]
        p = todo[i]
        y = p // w
        x = p - y * w
        best = -1
        for o in range(dy.shape[0]):
            yy = y + dy[o]
            xx = x + dx[o]
            if yy < 0 or yy >= h or xx < 0 or xx >= w or not core[yy, xx]:
                continue
            lab = labels[yy * w + xx]
            if best >= 0 and lab >= best:
                continue
            if pair_d2(colours, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
                best = lab
                if best == 0:
                    break
        labels[p] = best

    return count_neighbours, union_cores, attach_borders


TILE_BYTES = 40 * 1024
"""Largest shared-memory tile of colour values a block loads; larger stencils use the plain kernels."""


@functools.cache
def tiled_kernels(integer_codes: bool, channels: int, radius: int):
    """count_neighbours and union_cores reading colour values from a shared-memory tile (the block's pixels
    and a halo of ``radius``), loaded once per block; None when the tile would not fit."""
    bx, by = THREADS_2D
    th, tw = by + 2 * radius, bx + 2 * radius
    if th * tw * channels * 8 > TILE_BYTES:
        return None
    n_tile = th * tw

    @cuda.jit(device=True, inline=True)
    def load_tile(tile, colours, lut):
        h, w = colours.shape[0], colours.shape[1]
        y0 = cuda.blockIdx.y * by - radius
        x0 = cuda.blockIdx.x * bx - radius
        for i in range(cuda.threadIdx.y * bx + cuda.threadIdx.x, n_tile, bx * by):
            ty = i // tw
            tx = i - ty * tw
            gy = y0 + ty
            gx = x0 + tx
            if gy >= 0 and gy < h and gx >= 0 and gx < w:
                for k in range(channels):
                    if integer_codes:
                        tile[ty, tx, k] = lut[colours[gy, gx, k]]
                    else:
                        tile[ty, tx, k] = colours[gy, gx, k]
        cuda.syncthreads()

    @cuda.jit(device=True, inline=True)
    def tile_d2(tile, xs, ys, ly, lx, y, x, dyo, dxo, eps2):
        d2 = 0.0
        for k in range(channels):
            t = tile[ly, lx, k] - tile[ly + dyo, lx + dxo, k]
            d2 += t * t
        if d2 > eps2:
            return d2
        t = xs[x + dxo] - xs[x]
        d2 += t * t
        t = ys[y + dyo] - ys[y]
        return d2 + t * t

    @cuda.jit
    def count_neighbours(colours, lut, mask, masked, weights, weighted, xs, ys, dy, dx, eps2, min_samples, core):
        tile = cuda.shared.array((th, tw, channels), dtype=float64)
        load_tile(tile, colours, lut)
        x, y = cuda.grid(2)
        h, w = colours.shape[0], colours.shape[1]
        if y >= h or x >= w:
            return
        if masked and not mask[y, x]:
            core[y, x] = False
            return
        ly = cuda.threadIdx.y + radius
        lx = cuda.threadIdx.x + radius
        total = weights[y, x] if weighted else 1.0
        if total < min_samples:
            for o in range(dy.shape[0]):
                yy = y + dy[o]
                xx = x + dx[o]
                if yy < 0 or yy >= h or xx < 0 or xx >= w or (masked and not mask[yy, xx]):
                    continue
                if tile_d2(tile, xs, ys, ly, lx, y, x, dy[o], dx[o], eps2) <= eps2:
                    total += weights[yy, xx] if weighted else 1.0
                    if total >= min_samples:
                        break
        core[y, x] = total >= min_samples

    @cuda.jit
    def union_cores(colours, lut, core, xs, ys, dy, dx, eps2, parent):
        tile = cuda.shared.array((th, tw, channels), dtype=float64)
        load_tile(tile, colours, lut)
        x, y = cuda.grid(2)
        h, w = colours.shape[0], colours.shape[1]
        if y >= h or x >= w or not core[y, x]:
            return
        ly = cuda.threadIdx.y + radius
        lx = cuda.threadIdx.x + radius
        rp = find(parent, y * w + x)
        for o in range(dy.shape[0]):
            yy = y + dy[o]
            xx = x + dx[o]
            if yy >= h or xx < 0 or xx >= w or not core[yy, xx]:
                continue
            if tile_d2(tile, xs, ys, ly, lx, y, x, dy[o], dx[o], eps2) <= eps2:
                rp = union_from(parent, rp, yy * w + xx)

    return count_neighbours, union_cores


def run_grid_gpu(job: Job):
    return run_grid_device(job, job.device.xp)


def run_grid_device(job: Job, xp):
    """The grid engine on the GPU; ``xp`` is CuPy, or NumPy under the CUDA simulator."""
    require_nonnegative_weights(job, "grid")
    f = job.features
    h, w = f.shape
    count_neighbours, union_cores, attach_borders = kernels(f.lut is not None)
    dy_host, dx_host = stencil(job.eps, f.xy_scale, h, w)
    radius = int(max(np.abs(dy_host).max(initial=0), np.abs(dx_host).max(initial=0)))
    tiled = tiled_kernels(f.lut is not None, f.colours.shape[2], radius)
    if tiled is not None:
        count_neighbours, union_cores = tiled
    colours = f.colours
    lut = f.lut if f.lut is not None else xp.zeros(1)
    xs = xp.arange(w, dtype=xp.int64) * f.xy_scale
    ys = xp.arange(h, dtype=xp.int64) * f.xy_scale
    half = forward_half(dy_host, dx_host)
    dy, dx = xp.asarray(dy_host), xp.asarray(dx_host)
    fdy, fdx = xp.asarray(np.ascontiguousarray(dy_host[half])), xp.asarray(np.ascontiguousarray(dx_host[half]))
    masked = f.mask is not None
    mask = f.mask if masked else xp.ones((1, 1), dtype=xp.bool_)
    weighted = job.weights is not None
    if weighted:
        weights = xp.zeros((h, w), dtype=xp.float64)
        if masked:
            weights[mask] = job.weights
        else:
            weights[...] = job.weights.reshape(h, w)
    else:
        weights = xp.ones((1, 1), dtype=xp.float64)
    grid2, grid1 = blocks_2d(h, w), blocks_1d(h * w)
    eps2 = job.eps2
    with job.sub_stage("count"):
        core = xp.empty((h, w), dtype=xp.bool_)
        count_neighbours[grid2, THREADS_2D](
            colours, lut, mask, masked, weights, weighted, xs, ys, dy, dx, eps2, float(job.min_samples), core
        )
    with job.sub_stage("union"):
        index_dtype = xp.int32 if h * w < 2**31 else xp.int64
        parent = xp.arange(h * w, dtype=index_dtype)
        union_cores[grid2, THREADS_2D](colours, lut, core, xs, ys, fdy, fdx, eps2, parent)
    with job.sub_stage("number"):
        roots = xp.empty(h * w, dtype=index_dtype)
        flatten_roots[grid1, THREADS_1D](parent, core.reshape(-1), roots)
        labels = number_by_root(roots, xp)
        del parent, roots
    with job.sub_stage("borders"):
        outside = ~core if not masked else ~core & mask
        todo = xp.flatnonzero(outside.reshape(-1))
        if todo.shape[0]:
            attach_borders[blocks_1d(todo.shape[0]), THREADS_1D](colours, lut, core, xs, ys, dy, dx, eps2, todo, labels)
    return sample_labels(labels, job)
