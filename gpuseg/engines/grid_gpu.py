"""GPU kernels of the pixel-grid engine: one thread per pixel for each stage, the same stages and the same
pair test as the CPU engine (``_grid_cpu``)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import cuda, float64

from gpuseg.arrays import array_module
from gpuseg.engines._unionfind import number_by_root
from gpuseg.engines.base import Job
from gpuseg.engines.gpu_common import THREADS_1D, THREADS_2D, blocks_1d, blocks_2d, find, flatten_roots, union_from
from gpuseg.engines.grid import sample_labels, scattered_weights
from gpuseg.engines.stencil import forward_half, stencil, stencil_radius


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
    def pair_d2(colors, lut, xs, ys, y, x, yy, xx, eps2):
        d2 = 0.0
        for k in range(colors.shape[2]):
            d2 += sqdiff(lut, colors[y, x, k], colors[yy, xx, k])
        if d2 > eps2:
            return d2
        t = xs[xx] - xs[x]
        d2 += t * t
        t = ys[yy] - ys[y]
        return d2 + t * t

    @cuda.jit
    def count_neighbours(
        colors, lut, mask, masked, weights, weighted, xs, ys, dy, dx, eps2, min_samples, stop_at, core
    ):
        x, y = cuda.grid(2)
        h, w = colors.shape[0], colors.shape[1]
        if y >= h or x >= w:
            return
        if masked and not mask[y, x]:
            core[y, x] = False
            return
        total = weights[y, x] if weighted else 1.0
        if total < stop_at:
            for o in range(dy.shape[0]):
                yy = y + dy[o]
                xx = x + dx[o]
                if yy < 0 or yy >= h or xx < 0 or xx >= w or (masked and not mask[yy, xx]):
                    continue
                if pair_d2(colors, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
                    total += weights[yy, xx] if weighted else 1.0
                    if total >= stop_at:
                        break
        core[y, x] = total >= min_samples

    @cuda.jit
    def union_cores(colors, lut, core, xs, ys, dy, dx, eps2, parent):
        x, y = cuda.grid(2)
        h, w = colors.shape[0], colors.shape[1]
        if y >= h or x >= w or not core[y, x]:
            return
        rp = find(parent, y * w + x)
        for o in range(dy.shape[0]):
            yy = y + dy[o]
            xx = x + dx[o]
            if yy >= h or xx < 0 or xx >= w or not core[yy, xx]:
                continue
            if pair_d2(colors, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
                rp = union_from(parent, rp, yy * w + xx)

    @cuda.jit
    def attach_borders(colors, lut, core, xs, ys, dy, dx, eps2, todo, labels):
        """One thread per non-core sample (a compact list, so that warps do not idle on core pixels)."""
        i = cuda.grid(1)
        if i >= todo.shape[0]:
            return
        h, w = colors.shape[0], colors.shape[1]
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
            if pair_d2(colors, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
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
    def load_tile(tile, colors, lut):
        h, w = colors.shape[0], colors.shape[1]
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
                        tile[ty, tx, k] = lut[colors[gy, gx, k]]
                    else:
                        tile[ty, tx, k] = colors[gy, gx, k]
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
    def count_neighbours(
        colors, lut, mask, masked, weights, weighted, xs, ys, dy, dx, eps2, min_samples, stop_at, core
    ):
        tile = cuda.shared.array((th, tw, channels), dtype=float64)
        load_tile(tile, colors, lut)
        x, y = cuda.grid(2)
        h, w = colors.shape[0], colors.shape[1]
        if y >= h or x >= w:
            return
        if masked and not mask[y, x]:
            core[y, x] = False
            return
        ly = cuda.threadIdx.y + radius
        lx = cuda.threadIdx.x + radius
        total = weights[y, x] if weighted else 1.0
        if total < stop_at:
            for o in range(dy.shape[0]):
                yy = y + dy[o]
                xx = x + dx[o]
                if yy < 0 or yy >= h or xx < 0 or xx >= w or (masked and not mask[yy, xx]):
                    continue
                if tile_d2(tile, xs, ys, ly, lx, y, x, dy[o], dx[o], eps2) <= eps2:
                    total += weights[yy, xx] if weighted else 1.0
                    if total >= stop_at:
                        break
        core[y, x] = total >= min_samples

    @cuda.jit
    def union_cores(colors, lut, core, xs, ys, dy, dx, eps2, parent):
        tile = cuda.shared.array((th, tw, channels), dtype=float64)
        load_tile(tile, colors, lut)
        x, y = cuda.grid(2)
        h, w = colors.shape[0], colors.shape[1]
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


BYTES_PER_PIXEL = 48
"""Device memory the whole-image path needs per pixel, colours aside (core, parents, roots, labels and the
numbering's temporaries), with room to spare."""


@dataclass
class Window:
    """The arrays every stage reads, for the image rows ``[lo, hi)``: kernels see the window as an image
    whose y positions are the window's own (``ys``), so distances stay those of the whole image."""

    colors: object
    lut: object
    mask: object
    masked: bool
    weights: object
    weighted: bool
    xs: object
    ys: object

    def rows(self, lo: int, hi: int, xp) -> Window:
        def cut(a, full):  # host arrays are uploaded here, one band at a time
            return xp.ascontiguousarray(xp.asarray(a[lo:hi])) if full else a

        return Window(
            cut(self.colors, True),
            self.lut,
            cut(self.mask, self.masked),
            self.masked,
            cut(self.weights, self.weighted),
            self.weighted,
            self.xs,
            self.ys[lo:hi],
        )


def run_grid_device(job: Job, xp, band_rows: int | None = None):
    """The grid engine on the GPU; ``xp`` is CuPy, or NumPy under the CUDA simulator.

    Features already on the device (they fit, see :func:`whole_image_fits`) run whole. Features left in host
    memory run in bands of ``band_rows`` rows (as many as fit in free device memory unless given), each
    uploaded with a halo of the stencil radius, and the bands' components are joined exactly on the host.
    """
    f = job.features
    h, w = f.shape
    resident = array_module(f.colors) is xp
    dy_host, dx_host = stencil(job.eps, f.xy_scale, h, w)
    radius = int(max(np.abs(dy_host).max(initial=0), np.abs(dx_host).max(initial=0)))
    half = forward_half(dy_host, dx_host)
    stages = Stages(
        kernels(f.lut is not None),
        tiled_kernels(f.lut is not None, f.colors.shape[2], radius),
        xp.asarray(dy_host),
        xp.asarray(dx_host),
        xp.asarray(np.ascontiguousarray(dy_host[half])),
        xp.asarray(np.ascontiguousarray(dx_host[half])),
        job.eps2,
        float(job.min_samples),
        job.stop_at,
        xp,
    )
    masked = f.mask is not None
    weights = scattered_weights(job, xp if resident else np)
    weighted = weights is not None
    if not weighted:
        weights = xp.ones((1, 1), dtype=xp.float64)  # not read: the kernels add 1.0 per neighbour
    image = Window(
        f.colors,
        xp.asarray(f.lut) if f.lut is not None else xp.zeros(1),
        f.mask if masked else xp.ones((1, 1), dtype=xp.bool_),
        masked,
        weights,
        weighted,
        xp.arange(w, dtype=xp.int64) * f.xy_scale,
        xp.arange(h, dtype=xp.int64) * f.xy_scale,
    )
    if band_rows is None:
        band_rows = h if resident else rows_that_fit(h, w, f.colors.itemsize * f.colors.shape[2], radius, xp)
    if band_rows >= h and resident:
        with job.sub_stage("count"):
            core = stages.count(image)
        with job.sub_stage("union"):
            roots = stages.union_roots(image, core)
        with job.sub_stage("number"):
            labels = number_by_root(roots, xp)
            del roots
        with job.sub_stage("borders"):
            stages.attach_borders(image, core, labels)
        return sample_labels(labels, job)
    return sample_labels(banded(job, stages, image, h, w, max(min(band_rows, h), 1), radius, xp), job)


def whole_image_fits(job: Job) -> bool:
    """Do the image's features and the whole-image path's work arrays fit in free device memory? If not, the
    features stay in host memory and :func:`run_grid_device` uploads them band by band."""
    import cupy

    f = job.features
    if not f.is_image or f.xy_scale is None:
        return True
    h, w = f.shape
    radius = min(stencil_radius(job.eps, f.xy_scale, max(h, w)), h)
    return rows_that_fit(h, w, f.colors.itemsize * f.colors.shape[2], radius, cupy) >= h


def rows_that_fit(h: int, w: int, color_bytes: int, radius: int, xp) -> int:
    """How many rows (plus two halos) fit in 80% of the free device memory; all rows on the simulator."""
    if xp is np:
        return h
    free, _ = xp.cuda.Device().mem_info
    free += xp.get_default_memory_pool().free_bytes()
    per_row = w * (BYTES_PER_PIXEL + color_bytes)
    return int(0.8 * free // per_row) - 2 * radius


def banded(job: Job, stages: Stages, image: Window, h: int, w: int, band: int, radius: int, xp) -> np.ndarray:
    """The four stages over bands of rows; union-find across bands and the numbering run on the host."""
    from gpuseg.arrays import to_host
    from gpuseg.engines._unionfind import merge_window, number_components

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
            roots = to_host(stages.union_roots(image.rows(lo, hi, xp), xp.asarray(core[lo:hi])))
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


@dataclass
class Stages:
    """The stage kernels with the stencil and parameters of one run; each stage takes a :class:`Window`."""

    plain: tuple
    tiled: tuple | None
    dy: object
    dx: object
    fdy: object
    fdx: object
    eps2: float
    min_samples: float
    stop_at: float
    xp: object

    def count(self, win: Window):
        xp = self.xp
        h, w = win.colors.shape[:2]
        core = xp.empty((h, w), dtype=xp.bool_)
        kernel = (self.tiled or self.plain)[0]
        kernel[blocks_2d(h, w), THREADS_2D](
            win.colors, win.lut, win.mask, win.masked, win.weights, win.weighted, win.xs, win.ys,
            self.dy, self.dx, self.eps2, self.min_samples, self.stop_at, core,
        )  # fmt: skip
        return core

    def union_roots(self, win: Window, core):
        """Root (smallest index) of every core pixel's component within the window; -1 elsewhere."""
        xp = self.xp
        h, w = win.colors.shape[:2]
        index_dtype = xp.int32 if h * w < 2**31 else xp.int64
        parent = xp.arange(h * w, dtype=index_dtype)
        kernel = (self.tiled or self.plain)[1]
        kernel[blocks_2d(h, w), THREADS_2D](
            win.colors, win.lut, core, win.xs, win.ys, self.fdy, self.fdx, self.eps2, parent
        )
        roots = xp.empty(h * w, dtype=index_dtype)
        flatten_roots[blocks_1d(h * w), THREADS_1D](parent, core.reshape(-1), roots)
        return roots

    def attach_borders(self, win: Window, core, labels, rows=None):
        """Labels of the window's non-core samples (only in ``rows``, an (h, 1) mask, when given)."""
        xp = self.xp
        outside = ~core if not win.masked else ~core & win.mask
        if rows is not None:
            outside = outside & rows
        todo = xp.flatnonzero(outside.reshape(-1))
        if todo.shape[0]:
            self.plain[2][blocks_1d(todo.shape[0]), THREADS_1D](
                win.colors, win.lut, core, win.xs, win.ys, self.dy, self.dx, self.eps2, todo, labels
            )
