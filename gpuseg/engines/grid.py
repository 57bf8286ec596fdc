"""The pixel-grid engine: exact DBSCAN for image features with position.

Two pixels can only be neighbours when their offset lies in the stencil of radius floor(eps / xy_scale), so
each stage walks that stencil: count neighbours -> union cores -> number clusters -> attach borders.
No neighbour lists; memory O(pixels).
"""

from __future__ import annotations

import os

import numpy as np

from gpuseg.engines.base import Job
from gpuseg.engines.stencil import (
    LARGE_STENCIL,
    MAX_GRID_PAIRS,
    forward_half,
    stencil,
    stencil_radius,
    stencil_size,
)


def unsupported(job: Job) -> str | None:
    f = job.features
    if not f.is_image or f.xy_scale is None:
        return "engine='grid' needs image features with position (xy_scale set); use engine='cells' or 'auto'"
    size = stencil_size(job.eps, f.xy_scale, *f.shape)
    if size > LARGE_STENCIL and size * f.n_samples > MAX_GRID_PAIRS:
        radius = stencil_radius(job.eps, f.xy_scale, max(f.shape))
        reach = "anywhere in the image" if radius >= max(f.shape) else f"up to {radius:,} pixels apart"
        return (
            f"eps={job.eps:g} with xy_scale={f.xy_scale:g} lets pixels {reach} be neighbours: "
            f"{size:,} offsets for each of {f.n_samples:,} pixels is too much work for engine='grid'. Use a "
            "smaller eps, a larger xy_scale, xy_scale=0 (colour only), or at most 5 features (the cell engine)"
        )
    return None


def large_stencil(job: Job) -> bool:
    """Does the pixel stencil have more than :data:`LARGE_STENCIL` offsets?"""
    f = job.features
    return stencil_size(job.eps, f.xy_scale, *f.shape) > LARGE_STENCIL


def scattered_weights(job: Job, xp=np):
    """The sample weights on the pixel grid (H, W), 0 where a pixel is not a sample; None without weights."""
    if job.weights is None:
        return None
    grid = xp.zeros(job.features.shape, dtype=xp.float64)
    if job.features.mask is None:
        grid[...] = xp.asarray(job.weights).reshape(grid.shape)
    else:
        grid[xp.asarray(job.features.mask)] = xp.asarray(job.weights)
    return grid


def sample_labels(labels_flat, job: Job):
    """Labels of the samples (N,) from the labels of every pixel (H*W,)."""
    from gpuseg.arrays import array_module

    mask = job.features.mask
    if mask is None:
        return labels_flat
    return labels_flat[(mask if array_module(labels_flat) is array_module(mask) else mask.get()).ravel()]


def run_grid_cpu(job: Job) -> np.ndarray:
    from gpuseg.engines import _grid_cpu as k
    from gpuseg.engines._unionfind import number_components

    f = job.features
    h, w = f.shape
    colors = f.colors
    lut = f.lut if f.lut is not None else np.zeros(1)
    xs = np.arange(w, dtype=np.int64) * f.xy_scale
    ys = np.arange(h, dtype=np.int64) * f.xy_scale
    dy, dx = stencil(job.eps, f.xy_scale, h, w)
    half = forward_half(dy, dx)
    fdy, fdx = np.ascontiguousarray(dy[half]), np.ascontiguousarray(dx[half])
    mask = f.mask if f.mask is not None else np.broadcast_to(np.True_, (h, w))
    weights = scattered_weights(job)
    if weights is None:
        weights = np.broadcast_to(np.float64(1.0), (h, w))
    eps2 = job.eps2
    with job.sub_stage("count"):
        core = np.zeros((h, w), dtype=np.bool_)
        band = max(8, -(-h // (4 * (os.cpu_count() or 1))))
        k.count_neighbours(
            colors, lut, mask, weights, xs, ys, dy, dx, eps2, float(job.min_samples), job.stop_at, core, job.stop, band
        )
    with job.sub_stage("union"):
        index_dtype = np.int32 if h * w < 2**31 else np.int64
        parent = np.arange(h * w, dtype=index_dtype)
        bands = k.band_starts(h, 4 * (os.cpu_count() or 1))
        k.union_cores(colors, lut, core, xs, ys, fdy, fdx, eps2, parent, bands, job.stop)
    with job.sub_stage("number"):
        core_flat = core.ravel()
        labels = number_components(parent, core_flat)
        del parent
    with job.sub_stage("borders"):
        k.attach_borders(colors, lut, mask, core, xs, ys, dy, dx, eps2, labels, job.stop)
    return sample_labels(labels, job)
