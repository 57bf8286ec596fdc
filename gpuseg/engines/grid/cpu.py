"""CPU kernels of the pixel-grid engine (numba, parallel over rows).

The count is row-vectorised: offset by offset over whole rows of float color planes, without branches in
the inner loops, so that it runs at SIMD speed; a GPU has a thread per pixel instead (``cuda.py``). Union
and borders test pixel pairs with the helper that the CUDA kernels use. Each kernel skips its remaining
rows once ``stop[0]`` is set (see :mod:`gpuseg._core.interrupts`).
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit, prange

from gpuseg.engines import device_helpers as helpers
from gpuseg.engines.device_helpers import color_value
from gpuseg.engines.grid.stencil import forward_half
from gpuseg.engines.stopping import stopped
from gpuseg.engines.unionfind import find, number_components

pixel_d2 = helpers.pixel_d2_with(helpers.color_sqdiff, helpers.for_cpu)
border_label = helpers.pixel_border_label_with(pixel_d2, helpers.for_cpu)
tile_rows_of = helpers.for_cpu(helpers.tile_rows_of)


@njit(cache=True, nogil=True)
def _band_planes(colors, lut, mask, weights, lo, hi, planes, wts):
    """Rows [lo, hi) as float64 color planes ``planes[k, row - lo, x]`` and sample weights (0 where a
    pixel is not a sample): contiguous rows that the count loops read without lookups or branches."""
    w, n_colors = colors.shape[1], colors.shape[2]
    for yy in range(lo, hi):
        for x in range(w):
            for k in range(n_colors):
                planes[k, yy - lo, x] = color_value(lut, colors[yy, x, k])
            wts[yy - lo, x] = weights[yy, x] if mask[yy, x] else 0.0


ROW_CHECK = 16
"""Offsets between two checks of whether every pixel of a row has reached the count's stopping weight."""


@njit(cache=True, nogil=True, error_model="numpy")
def _count_row(planes, wts, xs, ys, y, lo, top, bottom, dy, dx, eps2, stop_at, acc, d2):
    """Add to ``acc[x]`` the weight of the neighbours of pixel (y, x) in rows [top, bottom), offset by
    offset over the whole row: contiguous loads and no branch in the inner loops (SIMD), the squared
    distance summed in the rule's order (colors, then x, then y). The offsets come nearest first; every
    ROW_CHECK of them, the row stops once each of its pixels has reached ``stop_at`` (min_samples;
    infinity with negative weights)."""
    n_colors, w = planes.shape[0], planes.shape[2]
    r = y - lo
    for o in range(dy.shape[0]):
        if o % ROW_CHECK == 0 and o > 0:
            done = True
            for x in range(w):
                if acc[x] < stop_at:
                    done = False
                    break
            if done:
                return
        yy = y + dy[o]
        if yy < top or yy >= bottom:
            continue
        q = yy - lo
        d = dx[o]
        x0, x1 = max(0, -d), min(w, w - d)
        n = x1 - x0
        a, b = planes[0, r, x0:x1], planes[0, q, x0 + d : x1 + d]
        for i in range(n):
            t = a[i] - b[i]
            d2[i] = t * t
        for k in range(1, n_colors):
            a, b = planes[k, r, x0:x1], planes[k, q, x0 + d : x1 + d]
            for i in range(n):
                t = a[i] - b[i]
                d2[i] += t * t
        ty = ys[yy] - ys[y]
        ty2 = ty * ty
        xa, xb, wb, ac = xs[x0:x1], xs[x0 + d : x1 + d], wts[q, x0 + d : x1 + d], acc[x0:x1]
        for i in range(n):
            t = xb[i] - xa[i]
            ac[i] += wb[i] if d2[i] + t * t + ty2 <= eps2 else 0.0


@njit(parallel=True, cache=True, nogil=True)
def count_neighbours(
    colors, lut, mask, weights, xs, ys, tile_rows, dy, dx, eps2, min_samples, stop_at, core, stop, band_rows
):
    """core[y, x] = weight of the pixel's eps-ball (itself included) >= min_samples.

    Bands of rows in parallel; each band takes its rows and a halo of the stencil's reach as float planes,
    then sums the neighbourhoods of each row together (see :func:`_count_row`), stopping when the whole row
    has reached ``stop_at``.
    """
    h, w, n_colors = colors.shape
    reach = 0
    for o in range(dy.shape[0]):
        reach = max(reach, abs(dy[o]))
    n_bands = (h + band_rows - 1) // band_rows
    for b in prange(n_bands):
        y0, y1 = b * band_rows, min(h, (b + 1) * band_rows)
        lo, hi = max(0, y0 - reach), min(h, y1 + reach)
        planes = np.empty((n_colors, hi - lo, w))
        wts = np.empty((hi - lo, w))
        _band_planes(colors, lut, mask, weights, lo, hi, planes, wts)
        acc = np.empty(w)
        d2 = np.empty(w)
        for y in range(y0, y1):
            if stopped(stop):
                break
            acc[:] = wts[y - lo]
            for x in range(w):
                if not mask[y, x]:
                    acc[x] = stop_at  # not a sample: never holds the row back
            top, bottom = tile_rows_of(y, 0, tile_rows, h)
            _count_row(planes, wts, xs, ys, y, lo, top, bottom, dy, dx, eps2, stop_at, acc, d2)
            for x in range(w):
                core[y, x] = mask[y, x] and acc[x] >= min_samples


@njit(cache=True, nogil=True)
def union_rows(colors, lut, core, xs, ys, tile_rows, dy, dx, eps2, parent, y_from, y_to, q_from, q_to, stop):
    """Union core pixels of rows [y_from, y_to) with forward core neighbours in rows [q_from, q_to).

    Row by row, offset by offset over the whole row: a pair is skipped when the neighbour's parent is the
    root the pixel had when its row began (the same set, however the trees changed since), which in a
    uniform region is nearly every pair; the others take the walk to both roots and the distance test.
    """
    h, w = colors.shape[0], colors.shape[1]
    roots = np.empty(w, dtype=parent.dtype)
    for y in range(y_from, y_to):
        if stopped(stop):
            return
        for x in range(w):
            roots[x] = find(parent, y * w + x) if core[y, x] else -1
        bottom = tile_rows_of(y, 0, tile_rows, h)[1]
        for o in range(dy.shape[0]):
            yy = y + dy[o]
            if yy < q_from or yy >= q_to or yy >= bottom:
                continue
            d = dx[o]
            for x in range(max(0, -d), min(w, w - d)):
                xx = x + d
                if roots[x] < 0 or not core[yy, xx]:
                    continue
                q = yy * w + xx
                if parent[q] == roots[x]:
                    continue
                rp = find(parent, y * w + x)
                rq = find(parent, q)
                roots[x] = rp  # the root now: later pairs of this pixel match it more often
                if rq == rp or pixel_d2(colors, lut, xs, ys, y, x, yy, xx, eps2) > eps2:
                    continue
                if rq < rp:
                    parent[rp] = rq
                    roots[x] = rq
                else:
                    parent[rq] = rp


@njit(parallel=True, cache=True, nogil=True)
def union_cores(colors, lut, core, xs, ys, tile_rows, dy, dx, eps2, parent, band_starts, stop):
    """Union every pair of core neighbours: bands of rows in parallel (their trees are disjoint), then the
    pairs that cross a band border, in one thread."""
    n_bands = band_starts.shape[0] - 1
    h = colors.shape[0]
    for b in prange(n_bands):
        y0, y1 = band_starts[b], band_starts[b + 1]
        union_rows(colors, lut, core, xs, ys, tile_rows, dy, dx, eps2, parent, y0, y1, y0, y1, stop)
    reach = 0
    for o in range(dy.shape[0]):
        reach = max(reach, dy[o])
    for b in range(n_bands - 1):
        y1 = band_starts[b + 1]
        union_rows(colors, lut, core, xs, ys, tile_rows, dy, dx, eps2, parent, max(y1 - reach, 0), y1, y1, h, stop)


@njit(parallel=True, cache=True, nogil=True)
def attach_borders(colors, lut, mask, core, xs, ys, tile_rows, dy, dx, eps2, labels, stop):
    """A non-core sample takes the smallest cluster number among its core neighbours (-1 if none)."""
    h, w = colors.shape[0], colors.shape[1]
    for y in prange(h):
        if stopped(stop):
            continue
        top, bottom = tile_rows_of(y, 0, tile_rows, h)
        for x in range(w):
            if mask[y, x] and not core[y, x]:
                labels[y * w + x] = border_label(colors, lut, core, xs, ys, labels, y, x, top, bottom, dy, dx, eps2)


def band_starts(height: int, n_bands: int) -> np.ndarray:
    """Row boundaries of ``n_bands`` nearly equal bands."""
    return np.linspace(0, height, max(1, min(n_bands, height)) + 1).round().astype(np.int64)


class CpuStages:
    """The grid engine's stages on the CPU, for :func:`gpuseg.engines.grid.run_grid`."""

    def __init__(self, job, dy: np.ndarray, dx: np.ndarray):
        half = forward_half(dy, dx)
        self.dy, self.dx = dy, dx
        self.fdy, self.fdx = np.ascontiguousarray(dy[half]), np.ascontiguousarray(dx[half])
        self.eps2 = job.eps2
        self.min_samples = float(job.min_samples)
        self.stop_at = job.stop_at
        self.stop = job.stop
        self.bands = 4 * (os.cpu_count() or 1)

    @staticmethod
    def _mask(win):
        return win.mask if win.mask is not None else np.broadcast_to(np.True_, win.shape)

    def count(self, win):
        h, _ = win.shape
        weights = win.weights if win.weights is not None else np.broadcast_to(np.float64(1.0), win.shape)
        core = np.zeros(win.shape, dtype=np.bool_)
        count_neighbours(
            win.colors, win.lut, self._mask(win), weights, win.xs, win.ys, win.tile_rows, self.dy, self.dx,
            self.eps2, self.min_samples, self.stop_at, core, self.stop, max(8, -(-h // self.bands)),
        )  # fmt: skip
        return core

    def union(self, win, core):
        """Union-find parents of the pixels: every link points to a smaller index."""
        h, w = win.shape
        parent = np.arange(h * w, dtype=np.int32 if h * w < 2**31 else np.int64)
        union_cores(
            win.colors, win.lut, core, win.xs, win.ys, win.tile_rows, self.fdy, self.fdx, self.eps2, parent,
            band_starts(h, self.bands), self.stop,
        )  # fmt: skip
        return parent

    def number(self, parent, core):
        return number_components(parent, core.reshape(-1))

    def attach_borders(self, win, core, labels):
        attach_borders(
            win.colors, win.lut, self._mask(win), core, win.xs, win.ys, win.tile_rows, self.dy, self.dx,
            self.eps2, labels, self.stop,
        )  # fmt: skip
