"""CUDA kernels of the pixel-grid engine: a thread per pixel for each stage (the CPU kernels walk whole
rows instead, see ``cpu.py``), with the pair test of ``device_helpers``.

Where the block's pixels and a halo of the stencil's radius fit in shared memory, count and union read
their colors from that tile, loaded once per block. Union joins the pairs inside each block in a
shared-memory union-find first, then the pairs that cross blocks in global memory (label equivalence, as
in GPU connected-component labelling); links always hang the larger root under the smaller.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import float64, int32

from gpuseg._core.arrays import array_module, to_host
from gpuseg.engines import device_helpers as helpers
from gpuseg.engines.base import Job
from gpuseg.engines.gpu_common import (
    THREADS_1D,
    THREADS_2D,
    blocks_1d,
    blocks_2d,
    cuda,
    find,
    flatten_roots,
    union,
    union_from,
)
from gpuseg.engines.grid.stencil import forward_half, stencil_radius
from gpuseg.engines.unionfind import merge_window, number_by_root, number_components

BX, BY = THREADS_2D
BLOCK_PIXELS = BX * BY
TILE_BYTES = 40 * 1024
"""Largest shared-memory tile of color values a block loads; larger stencils read colors from global
memory."""
tile_rows_of = helpers.for_cuda(helpers.tile_rows_of)
add_position_d2 = helpers.for_cuda(helpers.add_position_d2)


def tile_fits(channels: int, radius: int) -> bool:
    return (BY + 2 * radius) * (BX + 2 * radius) * channels * 8 <= TILE_BYTES


@functools.cache
def kernels(integer_codes: bool, channels: int, radius: int, tiled: bool = True):
    """The stage kernels for colors held as integer codes (with a lookup table) or as float64 values, with
    ``channels`` colors and a stencil of ``radius``; with a shared-memory tile where it fits and ``tiled``."""
    sqdiff = helpers.for_cuda(helpers.sqdiff_codes if integer_codes else helpers.sqdiff_values)
    pixel_d2 = helpers.pixel_d2_with(sqdiff, helpers.for_cuda)
    border_label = helpers.pixel_border_label_with(pixel_d2, helpers.for_cuda)
    tile_d2 = helpers.colors_d2_with(helpers.for_cuda(helpers.sqdiff_values), helpers.for_cuda)
    value = helpers.for_cuda(helpers.value_of_code if integer_codes else helpers.value_itself)
    tiled = tiled and tile_fits(channels, radius)
    th, tw = (BY + 2 * radius, BX + 2 * radius) if tiled else (1, 1)
    n_tile = th * tw

    @cuda.jit(device=True, inline=True)
    def load_tile(tile, colors, lut):
        """The block's pixels and their halo into ``tile`` (when tiled); every thread of the block calls it."""
        if tiled:
            h, w = colors.shape[0], colors.shape[1]
            y0 = cuda.blockIdx.y * BY - radius
            x0 = cuda.blockIdx.x * BX - radius
            for i in range(cuda.threadIdx.y * BX + cuda.threadIdx.x, n_tile, BX * BY):
                ty = i // tw
                tx = i - ty * tw
                gy = y0 + ty
                gx = x0 + tx
                if gy >= 0 and gy < h and gx >= 0 and gx < w:
                    for k in range(channels):
                        tile[ty, tx, k] = value(lut, colors[gy, gx, k])
            cuda.syncthreads()

    @cuda.jit(device=True, inline=True)
    def d2_of(tile, colors, lut, xs, ys, y, x, yy, xx, eps2):
        """pixel_d2, reading colors from the tile when tiled (its pixel (radius, radius) is the block's
        first pixel)."""
        if not tiled:
            return pixel_d2(colors, lut, xs, ys, y, x, yy, xx, eps2)
        oy = y - cuda.threadIdx.y - radius
        ox = x - cuda.threadIdx.x - radius
        d2 = tile_d2(tile, lut, y - oy, x - ox, yy - oy, xx - ox)
        if d2 > eps2:
            return d2
        return add_position_d2(d2, xs, ys, y, x, yy, xx)

    @cuda.jit
    def count_neighbours(
        colors, lut, mask, masked, weights, weighted, xs, ys, tile_rows, row0, dy, dx, eps2, min_samples, stop_at,
        core,
    ):  # fmt: skip
        tile = cuda.shared.array((th, tw, channels), dtype=float64)
        load_tile(tile, colors, lut)
        x, y = cuda.grid(2)
        h, w = colors.shape[0], colors.shape[1]
        if y >= h or x >= w:
            return
        if masked and not mask[y, x]:
            core[y, x] = False
            return
        top, bottom = tile_rows_of(y, row0, tile_rows, h)
        total = weights[y, x] if weighted else 1.0
        if total < stop_at:
            for o in range(dy.shape[0]):
                yy = y + dy[o]
                xx = x + dx[o]
                if yy < top or yy >= bottom or xx < 0 or xx >= w or (masked and not mask[yy, xx]):
                    continue
                if d2_of(tile, colors, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
                    total += weights[yy, xx] if weighted else 1.0
                    if total >= stop_at:
                        break
        core[y, x] = total >= min_samples

    @cuda.jit
    def union_within_blocks(colors, lut, core, xs, ys, tile_rows, row0, dy, dx, eps2, parent):
        """Join the forward core pairs inside each block in a shared-memory union-find of the block's
        pixels, then set each pixel's parent to its block root: the smallest index, since the block's
        row-major order is the image's."""
        tile = cuda.shared.array((th, tw, channels), dtype=float64)
        load_tile(tile, colors, lut)
        local = cuda.shared.array(BLOCK_PIXELS, dtype=int32)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        li = ty * BX + tx
        local[li] = li
        cuda.syncthreads()
        x, y = cuda.grid(2)
        h, w = colors.shape[0], colors.shape[1]
        x0, y0 = x - tx, y - ty
        inside = y < h and x < w
        if inside and core[y, x]:
            bottom = min(tile_rows_of(y, row0, tile_rows, h)[1], y0 + BY)
            for o in range(dy.shape[0]):
                yy = y + dy[o]
                xx = x + dx[o]
                if yy >= bottom or xx < x0 or xx >= x0 + BX or xx >= w or not core[yy, xx]:
                    continue
                if d2_of(tile, colors, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
                    union(local, li, (yy - y0) * BX + (xx - x0))
        cuda.syncthreads()
        if inside:
            r = find(local, li)
            parent[y * w + x] = (y0 + r // BX) * w + x0 + r % BX

    @cuda.jit
    def union_across_blocks(colors, lut, core, xs, ys, tile_rows, row0, dy, dx, eps2, parent):
        """Join the forward core pairs whose neighbour lies in another block (after union_within_blocks)."""
        tile = cuda.shared.array((th, tw, channels), dtype=float64)
        load_tile(tile, colors, lut)
        x, y = cuda.grid(2)
        h, w = colors.shape[0], colors.shape[1]
        if y >= h or x >= w or not core[y, x]:
            return
        x0, y0 = x - cuda.threadIdx.x, y - cuda.threadIdx.y
        bottom = tile_rows_of(y, row0, tile_rows, h)[1]
        rp = find(parent, y * w + x)
        for o in range(dy.shape[0]):
            yy = y + dy[o]
            xx = x + dx[o]
            if yy >= bottom or xx < 0 or xx >= w or not core[yy, xx]:
                continue
            if yy < y0 + BY and xx >= x0 and xx < x0 + BX:
                continue  # inside the block: joined already
            if d2_of(tile, colors, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
                rp = union_from(parent, rp, yy * w + xx)

    @cuda.jit
    def attach_borders(colors, lut, core, xs, ys, tile_rows, row0, dy, dx, eps2, todo, labels):
        """One thread per non-core sample (a compact list, so that warps do not idle on core pixels)."""
        i = cuda.grid(1)
        if i >= todo.shape[0]:
            return
        h, w = colors.shape[0], colors.shape[1]
        p = todo[i]
        y = p // w
        x = p - y * w
        top, bottom = tile_rows_of(y, row0, tile_rows, h)
        labels[p] = border_label(colors, lut, core, xs, ys, labels, y, x, top, bottom, dy, dx, eps2)

    return Kernels(count_neighbours, union_within_blocks, union_across_blocks, attach_borders)


@dataclass(frozen=True)
class Kernels:
    count_neighbours: object
    union_within_blocks: object
    union_across_blocks: object
    attach_borders: object


class CudaStages:
    """The grid engine's stages on the GPU, for :func:`gpuseg.engines.grid.run_grid`; each takes a
    :class:`gpuseg.engines.grid.Window` whose arrays are on the device."""

    def __init__(self, job: Job, dy: np.ndarray, dx: np.ndarray, xp, tiled: bool = True):
        f = job.features
        half = forward_half(dy, dx)
        self.radius = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0)))
        self.kernels = kernels(f.lut is not None, f.pixels.shape[2], self.radius, tiled)
        self.dy, self.dx = xp.asarray(dy), xp.asarray(dx)
        self.fdy = xp.asarray(np.ascontiguousarray(dy[half]))
        self.fdx = xp.asarray(np.ascontiguousarray(dx[half]))
        self.eps2 = job.eps2
        self.min_samples = float(job.min_samples)
        self.stop_at = job.stop_at
        self.xp = xp

    def _optional(self, win):
        """The mask and weights as the kernels take them: an array (a dummy one when absent) and a flag."""
        xp = self.xp
        mask = win.mask if win.mask is not None else xp.ones((1, 1), dtype=xp.bool_)
        weights = win.weights if win.weights is not None else xp.ones((1, 1), dtype=xp.float64)
        return mask, win.mask is not None, weights, win.weights is not None

    def count(self, win):
        h, w = win.shape
        core = self.xp.empty((h, w), dtype=self.xp.bool_)
        mask, masked, weights, weighted = self._optional(win)
        self.kernels.count_neighbours[blocks_2d(h, w), THREADS_2D](
            win.colors, win.lut, mask, masked, weights, weighted, win.xs, win.ys, win.tile_rows, win.row0,
            self.dy, self.dx, self.eps2, self.min_samples, self.stop_at, core,
        )  # fmt: skip
        return core

    def union(self, win, core):
        """Root (smallest index) of every core pixel's component within the window; -1 elsewhere."""
        xp = self.xp
        h, w = win.shape
        index_dtype = xp.int32 if h * w < 2**31 else xp.int64
        parent = xp.empty(h * w, dtype=index_dtype)
        args = (win.colors, win.lut, core, win.xs, win.ys, win.tile_rows, win.row0, self.fdy, self.fdx, self.eps2)
        self.kernels.union_within_blocks[blocks_2d(h, w), THREADS_2D](*args, parent)
        self.kernels.union_across_blocks[blocks_2d(h, w), THREADS_2D](*args, parent)
        roots = xp.empty(h * w, dtype=index_dtype)
        flatten_roots[blocks_1d(h * w), THREADS_1D](parent, core.reshape(-1), roots)
        return roots

    def number(self, roots, core):
        return number_by_root(roots, self.xp)

    def attach_borders(self, win, core, labels, rows=None):
        """Labels of the window's non-core samples (only in ``rows``, an (h, 1) mask, when given)."""
        outside = ~core if win.mask is None else ~core & win.mask
        if rows is not None:
            outside = outside & rows
        todo = self.xp.flatnonzero(outside.reshape(-1))
        if todo.shape[0]:
            self.kernels.attach_borders[blocks_1d(todo.shape[0]), THREADS_1D](
                win.colors, win.lut, core, win.xs, win.ys, win.tile_rows, win.row0, self.dy, self.dx, self.eps2,
                todo, labels,
            )  # fmt: skip


BYTES_PER_PIXEL = 48
"""Device memory the whole-image path needs per pixel, colors aside (core, parents, roots, labels and the
numbering's temporaries), with room to spare."""


def whole_image_fits(job: Job) -> bool:
    """Do the image's features and the whole-image path's work arrays fit in free device memory? If not, the
    features stay in host memory and :func:`banded` uploads them band by band."""
    import cupy

    f = job.features
    if not f.is_image or f.xy_scale is None:
        return True
    h, w = f.shape
    radius = min(stencil_radius(job.eps, f.xy_scale, max(f.image_shape)), h)
    return rows_that_fit(h, w, f.pixels.itemsize * f.pixels.shape[2], radius, cupy) >= h


def rows_that_fit(h: int, w: int, color_bytes: int, radius: int, xp) -> int:
    """How many rows (plus two halos) fit in 80% of the free device memory; all rows on the simulator."""
    if xp is np:
        return h
    free, _ = xp.cuda.Device().mem_info
    free += xp.get_default_memory_pool().free_bytes()
    per_row = w * (BYTES_PER_PIXEL + color_bytes)
    return int(0.8 * free // per_row) - 2 * radius


def rows_per_band(job: Job, image, stages: CudaStages, xp) -> int:
    """All rows when the features are on the device, else as many as fit in free device memory."""
    h, w = image.shape
    if array_module(image.colors) is xp:
        return h
    return max(min(rows_that_fit(h, w, image.colors.itemsize * image.colors.shape[2], stages.radius, xp), h), 1)


def banded(job: Job, stages: CudaStages, image, band: int, xp) -> np.ndarray:
    """The four stages over bands of ``band`` rows, each uploaded with a halo of the stencil's radius;
    union-find across bands and the numbering run on the host, exactly."""
    h, w = image.shape
    radius = stages.radius
    starts = range(0, h, band)
    core = np.zeros((h, w), dtype=np.bool_)
    with job.sub_stage("count"):
        for y0 in starts:
            y1, lo, hi = min(h, y0 + band), max(0, y0 - radius), min(h, y0 + band + radius)
            core[y0:y1] = to_host(stages.count(image.rows(lo, hi, xp)))[y0 - lo : y1 - lo]
    with job.sub_stage("union"):
        parent = np.arange(h * w, dtype=np.int64)
        for y0 in starts:  # unions reach forward only: a halo below each band
            lo, hi = y0, min(h, y0 + band + radius)
            roots = to_host(stages.union(image.rows(lo, hi, xp), xp.asarray(core[lo:hi])))
            merge_window(parent, lo * w, roots)
    with job.sub_stage("number"):
        labels = number_components(parent, core.reshape(-1))
        del parent
    with job.sub_stage("borders"):
        for y0 in starts:
            y1, lo, hi = min(h, y0 + band), max(0, y0 - radius), min(h, y0 + band + radius)
            window_labels = xp.asarray(labels[lo * w : hi * w])
            only = np.zeros((hi - lo, 1), dtype=np.bool_)
            only[y0 - lo : y1 - lo] = True
            stages.attach_borders(image.rows(lo, hi, xp), xp.asarray(core[lo:hi]), window_labels, xp.asarray(only))
            labels[y0 * w : y1 * w] = to_host(window_labels)[(y0 - lo) * w : (y1 - lo) * w]
    return labels
