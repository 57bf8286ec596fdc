"""CPU kernels of the pixel-grid engine (numba, parallel over rows).

Each stage visits a pixel's stencil of offsets and tests the pair with the exact squared distance over the
feature columns, accumulated in column order (colours, then x, then y), against eps**2.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from gpuseg.engines._kernels_common import color_sqdiff, color_value
from gpuseg.engines._unionfind import find


@njit(inline="always", cache=True)
def _pair_d2(colors, lut, xs, ys, y, x, yy, xx, eps2):
    d2 = 0.0
    for k in range(colors.shape[2]):
        d2 += color_sqdiff(lut, colors[y, x, k], colors[yy, xx, k])
    if d2 > eps2:
        return d2
    t = xs[xx] - xs[x]
    d2 += t * t
    t = ys[yy] - ys[y]
    return d2 + t * t


@njit(cache=True, nogil=True)
def _band_planes(colors, lut, mask, weights, lo, hi, planes, wts):
    """Rows [lo, hi) as float64 colour planes ``planes[k, row - lo, x]`` and sample weights (0 where a
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
def _count_row(planes, wts, xs, ys, y, lo, dy, dx, eps2, stop_at, acc, d2):
    """Add to ``acc[x]`` the weight of the neighbours of pixel (y, x), offset by offset over the whole row:
    contiguous loads and no branch in the inner loops (SIMD), the squared distance summed in the rule's
    order (colours, then x, then y). The offsets come nearest first; every ROW_CHECK of them, the row stops
    once each of its pixels has reached ``stop_at`` (min_samples; infinity with negative weights)."""
    n_colors, h_band, w = planes.shape
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
        q = r + dy[o]
        if q < 0 or q >= h_band:
            continue
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
        ty = ys[y + dy[o]] - ys[y]
        ty2 = ty * ty
        xa, xb, wb, ac = xs[x0:x1], xs[x0 + d : x1 + d], wts[q, x0 + d : x1 + d], acc[x0:x1]
        for i in range(n):
            t = xb[i] - xa[i]
            ac[i] += wb[i] if d2[i] + t * t + ty2 <= eps2 else 0.0


@njit(parallel=True, cache=True, nogil=True)
def count_neighbours(colors, lut, mask, weights, xs, ys, dy, dx, eps2, min_samples, stop_at, core, stop, band_rows):
    """core[y, x] = weight of the pixel's eps-ball (itself included) >= min_samples.

    Bands of rows in parallel; each band takes its rows and a halo of the stencil's reach as float planes,
    then sums the neighbourhoods of each row together (see :func:`_count_row`), stopping when the whole row
    has reached ``stop_at``. Every kernel skips its remaining rows once ``stop[0]`` is set (see
    :mod:`gpuseg.interrupts`).
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
            if stop[0]:
                break
            acc[:] = wts[y - lo]
            for x in range(w):
                if not mask[y, x]:
                    acc[x] = stop_at  # not a sample: never holds the row back
            _count_row(planes, wts, xs, ys, y, lo, dy, dx, eps2, stop_at, acc, d2)
            for x in range(w):
                core[y, x] = mask[y, x] and acc[x] >= min_samples


@njit(cache=True, nogil=True)
def union_rows(colors, lut, core, xs, ys, dy, dx, eps2, parent, y_from, y_to, q_from, q_to, stop):
    """Union core pixels of rows [y_from, y_to) with forward core neighbours in rows [q_from, q_to).

    Row by row, offset by offset over the whole row: a pair is skipped when the neighbour's parent is the
    root the pixel had when its row began (the same set, however the trees changed since), which in a
    uniform region is nearly every pair; the others take the walk to both roots and the distance test.
    """
    h, w = colors.shape[0], colors.shape[1]
    roots = np.empty(w, dtype=parent.dtype)
    for y in range(y_from, y_to):
        if stop[0]:
            return
        for x in range(w):
            roots[x] = find(parent, y * w + x) if core[y, x] else -1
        for o in range(dy.shape[0]):
            yy = y + dy[o]
            if yy < q_from or yy >= q_to or yy >= h:
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
                if rq == rp or _pair_d2(colors, lut, xs, ys, y, x, yy, xx, eps2) > eps2:
                    continue
                if rq < rp:
                    parent[rp] = rq
                    roots[x] = rq
                else:
                    parent[rq] = rp


@njit(parallel=True, cache=True, nogil=True)
def union_cores(colors, lut, core, xs, ys, dy, dx, eps2, parent, band_starts, stop):
    """Union every pair of core neighbours: bands of rows in parallel (their trees are disjoint), then the
    pairs that cross a band border, in one thread."""
    n_bands = band_starts.shape[0] - 1
    h = colors.shape[0]
    for b in prange(n_bands):
        y0, y1 = band_starts[b], band_starts[b + 1]
        union_rows(colors, lut, core, xs, ys, dy, dx, eps2, parent, y0, y1, y0, y1, stop)
    reach = 0
    for o in range(dy.shape[0]):
        reach = max(reach, dy[o])
    for b in range(n_bands - 1):
        y1 = band_starts[b + 1]
        union_rows(colors, lut, core, xs, ys, dy, dx, eps2, parent, max(y1 - reach, 0), y1, y1, h, stop)


@njit(parallel=True, cache=True, nogil=True)
def attach_borders(colors, lut, mask, core, xs, ys, dy, dx, eps2, labels, stop):
    """A non-core sample takes the smallest cluster number among its core neighbours (-1 if none)."""
    h, w = colors.shape[0], colors.shape[1]
    for y in prange(h):
        if stop[0]:
            continue
        for x in range(w):
            if not mask[y, x] or core[y, x]:
                continue
            best = -1
            for o in range(dy.shape[0]):
                yy = y + dy[o]
                xx = x + dx[o]
                if yy < 0 or yy >= h or xx < 0 or xx >= w or not core[yy, xx]:
                    continue
                lab = labels[yy * w + xx]
                if best >= 0 and lab >= best:
                    continue
                if _pair_d2(colors, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
                    best = lab
                    if best == 0:
                        break
            labels[y * w + x] = best


def band_starts(height: int, n_bands: int) -> np.ndarray:
    """Row boundaries of ``n_bands`` nearly equal bands."""
    return np.linspace(0, height, max(1, min(n_bands, height)) + 1).round().astype(np.int64)
