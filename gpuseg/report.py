"""Stage timing and the report of a run: a JSON-serialisable mapping with stable keys."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

STAGES = ("load", "features", "eps_search", "to_device", "cluster", "to_host", "postprocess", "save", "total")
"""The stages of ``report["timings_s"]``, in pipeline order; a stage a run skips reads 0.0."""

REPORT_KEYS = (
    "gpuseg_version",
    "source",
    "image_shape",
    "n_samples",
    "features",
    "eps",
    "min_samples",
    "color",
    "alpha",
    "xy_scale",
    "device",
    "device_name",
    "engine",
    "fallback_reason",
    "engine_note",
    "n_clusters",
    "noise_fraction",
    "cluster_sizes",
    "timings_s",
    "cluster_stages_s",
    "quality",
    "eps_search",
    "postprocess",
    "warnings",
)
"""Every key of a report, in order (see the README's report reference)."""

GIANT_CLUSTER = 0.9
"""A cluster holding more than this share of the samples is no segmentation: the report warns, and the
colour-only suggestion avoids such an eps."""


class StageTimer:
    """Seconds per named stage. ``sync`` is called before each clock read, so device work is counted in the
    stage that launched it."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync or (lambda: None)
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def cluster_summary(labels: np.ndarray) -> dict[str, Any]:
    """n_clusters, noise_fraction and cluster_sizes (index k is the size of cluster k) of a label array."""
    flat = np.asarray(labels).ravel()
    sizes = np.bincount(flat[flat >= 0]) if flat.size else np.zeros(0, dtype=np.int64)
    n = flat.size
    return {
        "n_clusters": int(sizes.shape[0]),
        "noise_fraction": float((flat < 0).sum() / n) if n else 0.0,
        "cluster_sizes": [int(s) for s in sizes],
    }


def format_seconds(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"
