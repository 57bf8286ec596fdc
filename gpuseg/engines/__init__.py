"""The engines behind one small registry.

Each engine is a name, the device kinds it runs on (a runner per kind, imported when used), and the
reasons it may not run: a library that is not installed, or an input it does not handle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from gpuseg.engines.base import Job

ENGINE_NAMES: tuple[str, ...] = ("auto", "grid", "cells", "sklearn", "sklearn-merged", "cuml")


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

    def runner(self, device_kind: str) -> Callable[[Job], object]:
        return _load(self.runners[device_kind])

    def why_not_input(self, job: Job) -> str | None:
        return _load(self.unsupported)(job) if self.unsupported else None

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
            {"cpu": "gpuseg.engines.grid:run_grid_cpu", "gpu": "gpuseg.engines.grid_gpu:run_grid_gpu"},
            unsupported="gpuseg.engines.grid:unsupported",
            missing=None,
        ),
        EngineSpec(
            "cells",
            "merged rows in cells of side eps/sqrt(d), exact; up to 5 features",
            {"cpu": "gpuseg.engines.cells:run_cells_cpu", "gpu": "gpuseg.engines.cells_gpu:run_cells_gpu"},
            unsupported="gpuseg.engines.cells:unsupported",
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
    """The engine called ``name``; ValueError listing the valid names otherwise."""
    if name not in ENGINES:
        raise ValueError(f"engine={name!r} is not one of {', '.join(ENGINE_NAMES)}")
    return ENGINES[name]


def auto_engine(job: Job, device_kind: str) -> str:
    """The engine ``engine="auto"`` picks: grid for pixels with position, cells for up to 5 features,
    else cuML on a GPU where installed, else scikit-learn on merged rows."""
    for name in ("grid", "cells"):
        if ENGINES[name].why_not_input(job) is None:
            return name
    if device_kind == "gpu" and ENGINES["cuml"].why_missing() is None:
        return "cuml"
    return "sklearn-merged"
