"""CPU kernels of the pixel-grid engine (numba, parallel over rows).

Each stage visits a pixel's stencil of offsets and tests the pair with the exact squared distance over the
feature columns, accumulated in column order (colours, then x, then y), against eps**2.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from gpuseg.engines._kernels_common import colour_sqdiff
from gpuseg.engines._unionfind import find


@njit(inline="always", cache=True)
def _pair_d2(colours, lut, xs, ys, y, x, yy, xx, eps2):
    d2 = 0.0
    for k in range(colours.shape[2]):
        d2 += colour_sqdiff(lut, colours[y, x, k], colours[yy, xx, k])
    if d2 > eps2:
        return d2
    t = xs[xx] - xs[x]
    d2 += t * t
    t = ys[yy] - ys[y]
    return d2 + t * t


@njit(parallel=True, cache=True, nogil=True)
def count_neighbours(colours, lut, mask, weights, xs, ys, dy, dx, eps2, min_samples, stop_at, core, stop):
    """core[y, x] = weight of the pixel's eps-ball (itself included) >= min_samples; the count stops once it
    reaches ``stop_at`` (min_samples, or infinity when negative weights make every neighbour count).

    Every kernel skips its remaining rows once ``stop[0]`` is set (see :mod:`gpuseg.interrupts`)."""
    h, w = colours.shape[0], colours.shape[1]
    for y in prange(h):
        if stop[0]:
            continue
        for x in range(w):
            if not mask[y, x]:
                continue
            total = weights[y, x]
            if total < stop_at:
                for o in range(dy.shape[0]):
                    yy = y + dy[o]
                    xx = x + dx[o]
                    if yy < 0 or yy >= h or xx < 0 or xx >= w or not mask[yy, xx]:
                        continue
                    if _pair_d2(colours, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
                        total += weights[yy, xx]
                        if total >= stop_at:
                            break
            core[y, x] = total >= min_samples


@njit(cache=True, nogil=True)
def union_rows(colours, lut, core, xs, ys, dy, dx, eps2, parent, y_from, y_to, q_from, q_to, stop):
    """Union core pixels of rows [y_from, y_to) with forward core neighbours in rows [q_from, q_to).

    A neighbour already in the pixel's tree is skipped before its distance is computed: in a uniform
    region most are, after the first few links.
    """
    h, w = colours.shape[0], colours.shape[1]
    for y in range(y_from, y_to):
        if stop[0]:
            return
        for x in range(w):
            if not core[y, x]:
                continue
            rp = find(parent, y * w + x)
            for o in range(dy.shape[0]):
                yy = y + dy[o]
                xx = x + dx[o]
                if yy < q_from or yy >= q_to or yy >= h or xx < 0 or xx >= w or not core[yy, xx]:
                    continue
                rq = find(parent, yy * w + xx)
                if rq == rp or _pair_d2(colours, lut, xs, ys, y, x, yy, xx, eps2) > eps2:
                    continue
                if rq < rp:
                    parent[rp] = rq
                    rp = rq
                else:
                    parent[rq] = rp


@njit(parallel=True, cache=True, nogil=True)
def union_cores(colours, lut, core, xs, ys, dy, dx, eps2, parent, band_starts, stop):
    """Union every pair of core neighbours: bands of rows in parallel (their trees are disjoint), then the
    pairs that cross a band border, in one thread."""
    n_bands = band_starts.shape[0] - 1
    h = colours.shape[0]
    for b in prange(n_bands):
        y0, y1 = band_starts[b], band_starts[b + 1]
        union_rows(colours, lut, core, xs, ys, dy, dx, eps2, parent, y0, y1, y0, y1, stop)
    reach = 0
    for o in range(dy.shape[0]):
        reach = max(reach, dy[o])
    for b in range(n_bands - 1):
        y1 = band_starts[b + 1]
        union_rows(colours, lut, core, xs, ys, dy, dx, eps2, parent, max(y1 - reach, 0), y1, y1, h, stop)


@njit(parallel=True, cache=True, nogil=True)
def attach_borders(colours, lut, mask, core, xs, ys, dy, dx, eps2, labels, stop):
    """A non-core sample takes the smallest cluster number among its core neighbours (-1 if none)."""
    h, w = colours.shape[0], colours.shape[1]
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
                if _pair_d2(colours, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
                    best = lab
                    if best == 0:
                        break
            labels[y * w + x] = best


def band_starts(height: int, n_bands: int) -> np.ndarray:
    """Row boundaries of ``n_bands`` nearly equal bands."""
    return np.linspace(0, height, max(1, min(n_bands, height)) + 1).round().astype(np.int64)
