"""The pixel-grid neighbourhood: which pixel offsets can hold an eps-neighbour, given the position scale."""

from __future__ import annotations

import math

import numpy as np

TIE_SLACK = 1e-9
"""Relative slack on eps when choosing candidate offsets and cells; the exact distance test decides."""


def position_slack(eps: float, xy_scale: float, extent: int) -> float:
    """Relative slack on eps for choosing offsets: TIE_SLACK, or more on images so wide (millions of pixels)
    that the rounding of positions ``x * xy_scale`` could bring a pair past the stencil within eps."""
    return TIE_SLACK + 8 * 2.0**-52 * extent * xy_scale / eps


def stencil_radius(eps: float, xy_scale: float, extent: int = 0) -> int:
    """Largest pixel offset along one axis that can be within ``eps``: ``floor(eps / xy_scale)``, on an image
    whose longer side is ``extent`` pixels."""
    return int(math.floor(eps / xy_scale * (1 + position_slack(eps, xy_scale, extent))))


def stencil(eps: float, xy_scale: float, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets ``(dy, dx)`` whose position distance alone is within ``eps`` (itself excluded).

    Sorted nearest first, so that a count that stops at min_samples stops early. Offsets larger than the
    image are left out.

    Returns
    -------
    dy, dx : ndarray of int64
    """
    slack = position_slack(eps, xy_scale, max(height, width))
    r = stencil_radius(eps, xy_scale, max(height, width))
    ry, rx = min(r, height - 1), min(r, width - 1)
    grid_y, grid_x = np.meshgrid(np.arange(-ry, ry + 1), np.arange(-rx, rx + 1), indexing="ij")
    dy, dx = grid_y.ravel(), grid_x.ravel()
    d2 = (dy * dy + dx * dx).astype(np.float64)
    keep = (d2 * xy_scale * xy_scale <= eps * eps * (1 + slack) ** 2) & (d2 > 0)
    dy, dx, d2 = dy[keep], dx[keep], d2[keep]
    order = np.lexsort((dx, dy, d2))
    return dy[order].astype(np.int64), dx[order].astype(np.int64)


def forward_half(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Mask of the offsets that point forward in row-major order: each unordered pair is visited once."""
    return (dy > 0) | ((dy == 0) & (dx > 0))


LARGE_STENCIL = 5_000
"""Stencils with more offsets than this (radius above about 40 pixels) go to the cell engine under ``auto``
where it can run: the grid engine's work grows with the stencil, the cell engine's cells grow with eps."""
MAX_GRID_PAIRS = 10**10
"""The grid engine refuses a large stencil when pixels x offsets exceeds this (minutes to hours of work)."""


def stencil_size(eps: float, xy_scale: float, height: int, width: int) -> int:
    """Number of offsets of :func:`stencil`, counted row by row without building it (O(radius))."""
    slack = position_slack(eps, xy_scale, max(height, width))
    r = stencil_radius(eps, xy_scale, max(height, width))
    ry, rx = min(r, height - 1), min(r, width - 1)
    dy = np.arange(-ry, ry + 1, dtype=np.float64)
    reach = np.floor(np.sqrt(np.maximum((eps / xy_scale * (1 + slack)) ** 2 - dy * dy, 0.0)))
    return int((2 * np.minimum(reach, rx) + 1).sum()) - 1
