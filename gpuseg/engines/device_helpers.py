"""Small helpers of the engines' kernels, written once in plain Python and compiled for both targets:
:func:`for_cpu` makes an inlined ``numba.njit`` function, :func:`for_cuda` an inlined numba-cuda device
function. The CPU and CUDA kernels of an engine call the same helpers, so a pair is tested the same way
on both.

Colors are held either as float64 values or as integer codes whose value is ``lut[code]``. A CUDA kernel
is compiled for one of the two (see ``grid.cuda.kernels``) with :func:`sqdiff_codes` or
:func:`sqdiff_values`; a CPU kernel serves both through :func:`color_sqdiff` and :func:`color_value`, whose
overloads pick the same two helpers from the array's dtype when the kernel compiles.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload


def for_cpu(fn):
    """``fn`` compiled for the CPU kernels (inlined, cached)."""
    return njit(inline="always", cache=True)(fn)


def numba_cuda():
    """``numba.cuda``. numba-cuda releases that predate NumPy 2.5 register an overload for np.row_stack,
    which NumPy 2.5 removed, and fail at their first kernel compilation; row_stack was NumPy's alias of
    vstack, so the alias is restored first."""
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack  # noqa: NPY201
    from numba import cuda

    return cuda


def for_cuda(fn):
    """``fn`` compiled as a CUDA device function (inlined). Under numba's CUDA simulator, ``fn`` itself: the
    simulator would wrap each call of a function of this module in a swap of its globals under a lock that
    every simulated thread takes (minutes for the test suite); these helpers use nothing of ``cuda``. The real
    compilation is checked by tests/engines/cuda_ptx.py."""
    from numba import config

    if config.ENABLE_CUDASIM:
        return fn
    return numba_cuda().jit(device=True, inline=True)(fn)


def sqdiff_values(lut, a, b):
    """Squared difference of two color values held as floats (``lut`` unused)."""
    d = a - b
    return d * d


def sqdiff_codes(lut, a, b):
    """Squared difference of the values of two integer color codes."""
    d = lut[a] - lut[b]
    return d * d


def value_itself(lut, c):
    return c


def value_of_code(lut, c):
    return lut[c]


def color_sqdiff(lut, a, b):
    """Squared difference of two colors, codes or values (for CPU kernels; see the module's docstring)."""
    return sqdiff_codes(lut, a, b) if isinstance(a, (int, np.integer)) else sqdiff_values(lut, a, b)


def color_value(lut, c):
    """The float64 value of a color code or value (for CPU kernels)."""
    return value_of_code(lut, c) if isinstance(c, (int, np.integer)) else float(c)


@overload(color_sqdiff, inline="always")
def _color_sqdiff(lut, a, b):
    return sqdiff_codes if isinstance(a, types.Integer) else sqdiff_values


@overload(color_value, inline="always")
def _color_value(lut, c):
    return value_of_code if isinstance(c, types.Integer) else value_itself


def colors_d2_with(sqdiff, target):
    """``colors_d2(colors, lut, y, x, yy, xx)``, compiled with ``target`` (:func:`for_cpu` or
    :func:`for_cuda`): the squared distance of the colors of pixels (y, x) and (yy, xx), summed over the
    channels in order, for the color storage of ``sqdiff`` (a function of that target)."""

    def colors_d2(colors, lut, y, x, yy, xx):
        d2 = 0.0
        for k in range(colors.shape[2]):
            d2 += sqdiff(lut, colors[y, x, k], colors[yy, xx, k])
        return d2

    return target(colors_d2)


def add_position_d2(d2, xs, ys, y, x, yy, xx):
    """``d2`` plus the squared x then y differences of pixels (y, x) and (yy, xx): the position columns
    come after the colors, and are added in that order."""
    t = xs[xx] - xs[x]
    d2 += t * t
    t = ys[yy] - ys[y]
    return d2 + t * t


def pixel_d2_with(sqdiff, target):
    """The pair test of the grid engines, compiled with ``target``: ``pixel_d2(colors, lut, xs, ys, y, x,
    yy, xx, eps2)`` is the squared distance of pixels (y, x) and (yy, xx), summed in the order of the
    feature columns (colors, then x, then y) as the exactness rule says; past ``eps2`` after the colors,
    it returns without the positions."""
    colors_d2 = colors_d2_with(sqdiff, target)
    add_position = target(add_position_d2)

    def pixel_d2(colors, lut, xs, ys, y, x, yy, xx, eps2):
        d2 = colors_d2(colors, lut, y, x, yy, xx)
        if d2 > eps2:
            return d2
        return add_position(d2, xs, ys, y, x, yy, xx)

    return target(pixel_d2)


def tile_rows_of(y, row0, tile_rows, h):
    """Rows ``[top, bottom)`` of the image that window row ``y`` belongs to, for windows whose first row is
    row ``row0`` of a stack of images of ``tile_rows`` rows each (one image: ``tile_rows`` = its height);
    clipped to the window's ``h`` rows."""
    g = y + row0
    top = g - g % tile_rows - row0
    return max(top, 0), min(top + tile_rows, h)


def points_d2(points, i, j, eps2):
    """Squared distance of points i and j, summed in column order; stops once it exceeds ``eps2``."""
    d2 = 0.0
    for k in range(points.shape[1]):
        t = points[i, k] - points[j, k]
        d2 += t * t
        if d2 > eps2:
            return d2
    return d2


def neighbour_cell(coords, keys, table, extent, strides, offsets, c, o):
    """Index of the occupied cell at offset ``o`` from cell ``c``, or -1: by the dense ``table`` where there
    is one, else by binary search of the ascending ``keys``."""
    key = 0
    for k in range(coords.shape[1]):
        v = coords[c, k] + offsets[o, k]
        if v < 0 or v >= extent[k]:
            return -1
        key += v * strides[k]
    if table.shape[0]:
        return table[key]
    lo = 0
    hi = keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < keys.shape[0] and keys[lo] == key:
        return lo
    return -1


def cells_adjacent(coords, a, b):
    """Do cells a and b touch (every coordinate within 1)? Such cells are joined first: they are the
    likeliest to hold touching core points, and joining them early lets the others be skipped."""
    for k in range(coords.shape[1]):
        if abs(coords[a, k] - coords[b, k]) > 1:
            return False
    return True


def find(parent, i):
    """Root of ``i``, halving the path on the way. Parents only ever point to smaller indices, so the loop
    ends; on a GPU the halving writes race harmlessly (each only moves a pointer to an ancestor)."""
    p = parent[i]
    while p != parent[p]:
        g = parent[p]
        parent[i] = g
        i = p
        p = g
    return p


def ball_weight_with(target):
    """``ball_weight(points, weights, start, ptr, idx, c, i, total, eps2, stop_at)``, compiled with ``target``:
    ``total`` (the weight of point i's own cell c, all within eps) plus the weights of the points within eps
    in the neighbouring cells ``idx[ptr[c]:ptr[c + 1]]``, stopping once it reaches ``stop_at``."""
    d2 = target(points_d2)

    def ball_weight(points, weights, start, ptr, idx, c, i, total, eps2, stop_at):
        if total >= stop_at:
            return total
        for n in range(ptr[c], ptr[c + 1]):
            b = idx[n]
            if b == c:
                continue
            for j in range(start[b], start[b + 1]):
                if d2(points, i, j, eps2) <= eps2:
                    total += weights[j]
                    if total >= stop_at:
                        return total
        return total

    return target(ball_weight)


def cell_border_label_with(target):
    """``border_label(points, core, start, ptr, idx, cell_label, c, i, eps2)``, compiled with ``target``: the
    smallest cluster number among the core points within eps of the non-core point i of cell c (-1 if none);
    a cell's own core points are all within eps."""
    d2 = target(points_d2)

    def border_label(points, core, start, ptr, idx, cell_label, c, i, eps2):
        best = cell_label[c]
        for n in range(ptr[c], ptr[c + 1]):
            b = idx[n]
            lab = cell_label[b]
            if lab < 0 or (best >= 0 and lab >= best):
                continue
            for j in range(start[b], start[b + 1]):
                if core[j] and d2(points, i, j, eps2) <= eps2:
                    best = lab
                    break
        return best

    return target(border_label)


def pixel_border_label_with(pixel_d2, target):
    """``border_label(colors, lut, core, xs, ys, labels, y, x, top, bottom, dy, dx, eps2)``, compiled with
    ``target``: the smallest cluster number among the core pixels within eps of pixel (y, x), looking in rows
    [top, bottom) (its image), -1 if none."""

    def border_label(colors, lut, core, xs, ys, labels, y, x, top, bottom, dy, dx, eps2):
        w = colors.shape[1]
        best = -1
        for o in range(dy.shape[0]):
            yy = y + dy[o]
            xx = x + dx[o]
            if yy < top or yy >= bottom or xx < 0 or xx >= w or not core[yy, xx]:
                continue
            lab = labels[yy * w + xx]
            if best >= 0 and lab >= best:
                continue
            if pixel_d2(colors, lut, xs, ys, y, x, yy, xx, eps2) <= eps2:
                best = lab
                if best == 0:
                    break
        return best

    return target(border_label)
