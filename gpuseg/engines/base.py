"""What every engine receives, and the checks they share."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gpuseg.device import Device
from gpuseg.features import Features
from gpuseg.interrupts import stop_flag
from gpuseg.report import StageTimer


@dataclass
class Job:
    """One clustering run: the samples, DBSCAN's parameters, the device and the timer of the run.

    ``weights`` is None (every sample weighs 1) or a float64 array with one weight per sample. Engines put
    a line for the report in ``note`` when they do something the user should know (a fallback).
    """

    features: Features
    eps: float
    min_samples: int
    weights: np.ndarray | None
    device: Device
    timer: StageTimer = field(default_factory=StageTimer)
    sub_seconds: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    stop: np.ndarray = field(default_factory=stop_flag)
    """Set when the caller was interrupted: the CPU kernels then skip the rest of their work."""

    @property
    def eps2(self) -> float:
        return self.eps * self.eps

    def sub_stage(self, name: str):
        """Time a stage inside the cluster stage (count, union, number, borders, ...)."""
        timer = StageTimer(self.timer.sync)
        timer.seconds = self.sub_seconds
        return timer.stage(name)


def require_nonnegative_weights(job: Job, engine: str) -> None:
    if job.weights is not None and (job.weights < 0).any():
        raise ValueError(
            f"sample_weight has negative values; engine={engine!r} stops counting a neighbourhood once it "
            "reaches min_samples, which needs weights >= 0. Use engine='sklearn' for negative weights."
        )
