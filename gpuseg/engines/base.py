"""What every engine receives, and the checks they share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gpuseg._core.device import Device
from gpuseg._core.interrupts import stop_flag
from gpuseg._core.timing import StageTimer
from gpuseg.features import Features


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

    @property
    def stop_at(self) -> float:
        """The weight at which a neighbourhood count may stop: min_samples when no weight is negative (the
        sum can only grow), else infinity, so that every neighbourhood is summed whole."""
        if self.weights is not None and bool((self.weights < 0).any()):
            return math.inf
        return float(self.min_samples)

    def sub_stage(self, name: str):
        """Time a stage inside the cluster stage (count, union, number, borders, ...)."""
        timer = StageTimer(self.timer.sync)
        timer.seconds = self.sub_seconds
        return timer.stage(name)
