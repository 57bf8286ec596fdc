"""The pixel-grid engine: exact DBSCAN for image features with position.

Two pixels can only be neighbours when their offset lies in the stencil of radius floor(eps / xy_scale), so
each stage walks that stencil: count neighbours -> union cores -> number clusters -> attach borders.
No neighbour lists; memory O(pixels). One driver (:func:`run_grid`) runs the stages on either target:
``cpu.py`` (numba, rows in parallel) and ``cuda.py`` (numba-cuda, a thread per pixel).

Features may stack several images of one size (``Features.image_rows``): every stage keeps a pixel's
stencil inside its own image, so the images are clustered independently in one pass (one launch per stage
on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from gpuseg._core.arrays import Array
from gpuseg.engines.base import Job
from gpuseg.engines.grid.stencil import (
    LARGE_STENCIL,
    MAX_GRID_PAIRS,
    stencil_radius,
    stencil_size,
)
from gpuseg.engines.grid.stencil import stencil as stencil_offsets  # the package's ``stencil`` stays the module

if TYPE_CHECKING:
    from gpuseg.engines.grid.cpu import CpuStages
    from gpuseg.engines.grid.cuda import CudaStages


def unsupported(job: Job) -> str | None:
    f = job.features
    if not f.is_image or f.xy_scale is None:
        return "engine='grid' needs image features with position (xy_scale set); use engine='cells' or 'auto'"
    size = stencil_size(job.eps, f.xy_scale, *f.image_shape)
    if size > LARGE_STENCIL and size * f.n_samples > MAX_GRID_PAIRS:
        radius = stencil_radius(job.eps, f.xy_scale, max(f.image_shape))
        reach = "anywhere in the image" if radius >= max(f.image_shape) else f"up to {radius:,} pixels apart"
        return (
            f"eps={job.eps:g} with xy_scale={f.xy_scale:g} lets pixels {reach} be neighbours: "
            f"{size:,} offsets for each of {f.n_samples:,} pixels is too much work for engine='grid'. Use a "
            "smaller eps, a larger xy_scale, xy_scale=0 (color only), or at most 5 features (the cell engine)"
        )
    return None


def large_stencil(job: Job) -> bool:
    """Does the pixel stencil have more than :data:`LARGE_STENCIL` offsets?"""
    f = job.features
    return stencil_size(job.eps, f.position_scale, *f.image_shape) > LARGE_STENCIL


@dataclass
class Window:
    """What every stage reads, for the rows of the image (or of a band of it) that the stages see.

    ``mask`` is None when every pixel is a sample, ``weights`` None when every sample weighs 1. ``xs`` and
    ``ys`` are the position features of the columns and rows (``ys`` restarts at every image of a stack);
    rows ``[t * tile_rows, (t + 1) * tile_rows)`` of the whole stack are one image, and the window's first
    row is row ``row0`` of the stack.
    """

    colors: Array
    lut: Array
    mask: Array | None
    weights: Array | None
    xs: Array
    ys: Array
    tile_rows: int
    row0: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.colors.shape[0], self.colors.shape[1]

    def rows(self, lo: int, hi: int, xp) -> Window:
        """Rows ``[lo, hi)``, uploaded with ``xp`` (features left in host memory move one band at a time)."""

        def cut(a):
            return None if a is None else xp.ascontiguousarray(xp.asarray(a[lo:hi]))

        return replace(
            self, colors=cut(self.colors), mask=cut(self.mask), weights=cut(self.weights), ys=self.ys[lo:hi], row0=lo
        )


def image_window(job: Job, xp) -> Window:
    """The whole image (or stack of images) as a :class:`Window`; weights on the grid, positions computed
    as ``index * xy_scale`` as the features define them."""
    f = job.features
    h, w = f.shape
    tile = f.image_rows or h
    weights = None
    if job.weights is not None:
        on = xp if f.colors is not None and _array_module(f.colors) is xp else np
        weights = on.zeros((h, w), dtype=np.float64)
        if f.mask is None:
            weights[...] = on.asarray(job.weights).reshape(h, w)
        else:
            weights[on.asarray(f.mask)] = on.asarray(job.weights)
    ys = xp.arange(tile, dtype=xp.int64) * f.xy_scale
    return Window(
        colors=f.colors,
        lut=xp.asarray(f.lut) if f.lut is not None else xp.zeros(1),
        mask=f.mask,
        weights=weights,
        xs=xp.arange(w, dtype=xp.int64) * f.xy_scale,
        ys=xp.tile(ys, h // tile),
        tile_rows=tile,
    )


def _array_module(a):
    from gpuseg._core.arrays import array_module

    return array_module(a)


def sample_labels(labels_flat, job: Job):
    """Labels of the samples (N,) from the labels of every pixel (H*W,)."""
    mask = job.features.mask
    if mask is None:
        return labels_flat
    return labels_flat[(mask if _array_module(labels_flat) is _array_module(mask) else mask.get()).ravel()]


def run_grid(job: Job, xp=None, band_rows: int | None = None):
    """The grid engine on the job's device; ``xp`` is the device's array module (NumPy under the CUDA
    simulator). On a GPU, features left in host memory (too large to upload whole), or ``band_rows`` given,
    run in bands of rows (see :func:`gpuseg.engines.grid.cuda.banded`)."""
    f = job.features
    h, w = f.shape
    dy, dx = stencil_offsets(job.eps, f.position_scale, *f.image_shape)
    stages: CpuStages | CudaStages
    if job.device.kind == "cpu":
        from gpuseg.engines.grid.cpu import CpuStages

        xp = np
        stages = CpuStages(job, dy, dx)
        image = image_window(job, xp)
    else:
        from gpuseg.engines.grid.cuda import CudaStages, banded, rows_per_band

        xp = xp or job.device.xp
        stages = CudaStages(job, dy, dx, xp)
        image = image_window(job, xp)
        band = rows_per_band(job, image, stages, xp) if band_rows is None else max(min(band_rows, h), 1)
        if band < h or _array_module(f.colors) is not xp:
            return sample_labels(banded(job, stages, image, band, xp), job)
    with job.sub_stage("count"):
        core = stages.count(image)
    with job.sub_stage("union"):
        links = stages.union(image, core)
    with job.sub_stage("number"):
        labels = stages.number(links, core)
        del links
    with job.sub_stage("borders"):
        stages.attach_borders(image, core, labels)
    return sample_labels(labels, job)
