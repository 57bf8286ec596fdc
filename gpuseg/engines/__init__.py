"""The engines behind one small registry.

Each engine is a name, the device kinds it runs on (a runner per kind, imported when used), and the
reasons it may not run: a library that is not installed, or an input it does not handle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from gpuseg.engines.base import Job
from gpuseg.params import check


@dataclass(frozen=True)
class EngineSpec:
    name: str
    summary: str
    runners: dict[str, str]
    """device kind -> "module:function" taking a Job and returning labels (N,) on that device."""
    unsupported: str | None = None
    """"module:function" (Job) -> reason the engine cannot run this input, or None."""
    missing: str | None = None
    """"module:function" () -> reason the engine's library is unusable here, or None."""
    exact: bool = True
    fits_on_device: str | None = None
    """"module:function" (Job) -> whether the features fit in device memory whole; when they do not, the GPU
    runner receives them in host memory and uploads them part by part. None: always uploaded whole."""

    def runner(self, device_kind: str) -> Callable[[Job], object]:
        return _load(self.runners[device_kind])

    def why_not_input(self, job: Job) -> str | None:
        return _load(self.unsupported)(job) if self.unsupported else None

    def uploads_whole(self, job: Job) -> bool:
        return _load(self.fits_on_device)(job) if self.fits_on_device else True

    def why_missing(self) -> str | None:
        return _load(self.missing)() if self.missing else None


def _load(target: str) -> Callable:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


ENGINES: dict[str, EngineSpec] = {
    spec.name: spec
    for spec in (
        EngineSpec(
            "grid",
            "pixel-grid stencil, exact; image features with position",
            {"cpu": "gpuseg.engines.grid:run_grid", "gpu": "gpuseg.engines.grid:run_grid"},
            unsupported="gpuseg.engines.grid:unsupported",
            fits_on_device="gpuseg.engines.grid.cuda:whole_image_fits",
        ),
        EngineSpec(
            "cells",
            "merged rows in cells of side eps/sqrt(d), exact; up to 5 features",
            {"cpu": "gpuseg.engines.cells:run_cells", "gpu": "gpuseg.engines.cells:run_cells"},
            unsupported="gpuseg.engines.cells:unsupported",
        ),
        EngineSpec(
            "tree",
            "merged rows, k-d tree neighbour lists in parallel chunks, exact; any number of features",
            {"cpu": "gpuseg.engines.tree:run_tree_cpu"},
        ),
        EngineSpec(
            "sklearn", "scikit-learn on the raw rows (the reference)", {"cpu": "gpuseg.engines.sklearn:run_sklearn"}
        ),
        EngineSpec(
            "sklearn-merged",
            "scikit-learn on merged identical rows with their counts as sample_weight",
            {"cpu": "gpuseg.engines.sklearn:run_sklearn_merged"},
        ),
        EngineSpec(
            "cuml",
            "cuML's brute-force DBSCAN on merged rows (border points may differ)",
            {"gpu": "gpuseg.engines.cuml:run_cuml"},
            missing="gpuseg.engines.cuml:missing",
            exact=False,
        ),
    )
}


def get_engine(name: str) -> EngineSpec:
    """The engine called ``name`` (not "auto"); ValueError listing the valid names otherwise."""
    if check("engine", name) == "auto":
        raise ValueError("engine='auto' is a choice among the engines, not one of them")
    return ENGINES[name]


def auto_engine(job: Job, device_kind: str) -> str:
    """The engine ``engine="auto"`` picks: grid for pixels with position (cells instead when the stencil is
    large and cells can run), cells for up to 5 features, else cuML on a GPU where installed, else the
    tree engine (on the CPU).

    Raises
    ------
    ValueError
        Pixels with position whose stencil is too large for the grid engine, and too many features for cells.
    """
    from gpuseg.engines.grid import large_stencil

    grid_reason = ENGINES["grid"].why_not_input(job)
    cells_reason = ENGINES["cells"].why_not_input(job)
    position = job.features.is_image and job.features.xy_scale is not None
    if grid_reason is None and (cells_reason is not None or not large_stencil(job)):
        return "grid"
    if cells_reason is None:
        return "cells"
    if position:  # the stencil is too large for the grid engine and there is no cheaper exact path
        raise ValueError(grid_reason)
    if device_kind == "gpu" and ENGINES["cuml"].why_missing() is None:
        return "cuml"
    return "tree"
