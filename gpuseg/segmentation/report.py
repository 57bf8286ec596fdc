"""The report of a segmentation: one typed mapping, JSON as it is, built in one place for every kind of run.

:func:`make_report` builds it for :func:`gpuseg.segment` and for chunked runs alike; its keys are
:data:`REPORT_KEYS`, in order (a chunked run adds ``chunking`` and ``workers``, a written run ``outputs``).
"""

from typing import Any, NotRequired, TypedDict

import numpy as np

from gpuseg._core.device import Device
from gpuseg.params import GIANT_CLUSTER

STAGES = ("load", "features", "eps_search", "to_device", "cluster", "to_host", "postprocess", "save", "total")
"""The stages of ``report["timings_s"]``, in pipeline order; a stage a run skips reads 0.0."""
TARGET_MISSED = 0.03
"""eps="auto" warns when the noise it ends at is further than this from the target."""


class Report(TypedDict):
    """What a run did, as JSON (see the README's report reference)."""

    gpuseg_version: str
    source: str | None
    image_shape: list[int]
    n_samples: int
    features: list[str]
    eps: float
    min_samples: int
    color: str
    alpha: str
    xy_scale: float | None
    device: str
    device_name: str
    engine: str
    fallback_reason: str | None
    engine_note: str | None
    n_clusters: int
    noise_fraction: float
    cluster_sizes: list[int]
    timings_s: dict[str, float]
    cluster_stages_s: dict[str, float]
    quality: dict[str, float] | None
    eps_search: dict[str, Any] | None
    postprocess: dict[str, Any] | None
    warnings: list[str]
    chunking: NotRequired[dict[str, Any]]
    workers: NotRequired[int]
    outputs: NotRequired[list[str]]


REPORT_KEYS: tuple[str, ...] = tuple(k for k in Report.__annotations__ if k in Report.__required_keys__)
"""Every key of a report, in order."""


def make_report(
    *,
    source: str | None,
    image_shape: tuple[int, ...],
    n_samples: int,
    features: tuple[str, ...],
    eps: float,
    min_samples: int,
    color: str,
    alpha: str,
    xy_scale: float | None,
    device: Device,
    engine: str,
    engine_note: str | None,
    cluster_sizes: np.ndarray | list[int],
    noise_fraction: float,
    timings_s: dict[str, float],
    cluster_stages_s: dict[str, float],
    quality: dict[str, float] | None = None,
    eps_search: dict[str, Any] | None = None,
    postprocess: dict[str, Any] | None = None,
) -> Report:
    """The report of a run; ``timings_s`` gets every stage of :data:`STAGES` (0.0 for those it lacks) and
    ``warnings`` says what to mistrust (see :func:`report_warnings`)."""
    from gpuseg._core.version import __version__

    sizes = [int(s) for s in cluster_sizes]
    report: Report = {
        "gpuseg_version": __version__,
        "source": source,
        "image_shape": [int(n) for n in image_shape],
        "n_samples": int(n_samples),
        "features": list(features),
        "eps": float(eps),
        "min_samples": int(min_samples),
        "color": color,
        "alpha": alpha,
        "xy_scale": xy_scale,
        "device": device.kind,
        "device_name": device.name,
        "engine": engine,
        "fallback_reason": device.fallback_reason,
        "engine_note": engine_note,
        "n_clusters": len(sizes),
        "noise_fraction": float(noise_fraction),
        "cluster_sizes": sizes,
        "timings_s": {name: float(timings_s.get(name, 0.0)) for name in STAGES},
        "cluster_stages_s": dict(cluster_stages_s),
        "quality": quality,
        "eps_search": eps_search,
        "postprocess": postprocess,
        "warnings": [],
    }
    report["warnings"] = report_warnings(report)
    return report


def cluster_summary(labels: np.ndarray) -> dict[str, Any]:
    """n_clusters, noise_fraction and cluster_sizes (index k is the size of cluster k) of a label array.

    Examples
    --------
    >>> cluster_summary(np.array([0, 0, 1, -1]))
    {'n_clusters': 2, 'noise_fraction': 0.25, 'cluster_sizes': [2, 1]}
    """
    flat = np.asarray(labels).ravel()
    sizes = np.bincount(flat[flat >= 0]) if flat.size else np.zeros(0, dtype=np.int64)
    n = flat.size
    return {
        "n_clusters": int(sizes.shape[0]),
        "noise_fraction": float((flat < 0).sum() / n) if n else 0.0,
        "cluster_sizes": [int(s) for s in sizes],
    }


def report_warnings(report: Report) -> list[str]:
    """What to say about labels that are exact but not a useful segmentation, with the fix: an eps search
    that missed its target, one cluster holding nearly every sample, a fill with no cluster to fill from."""
    warnings = []
    search = report["eps_search"]
    if search is not None and abs(search["noise_fraction"] - search["target_noise"]) > TARGET_MISSED:
        warnings.append(
            f"eps='auto' ended at {search['noise_fraction']:.1%} noise, not target_noise={search['target_noise']:g}: "
            f"no eps of the {len(search['runs'])} tried came closer (the noise falls in steps on this image, or the "
            "target lies beyond the eps searched); choose eps yourself, or another target"
        )
    sizes, noise, xy_scale = report["cluster_sizes"], report["noise_fraction"], report["xy_scale"]
    total = sum(sizes) / (1 - noise) if noise < 1 else 0
    if sizes and total and max(sizes) / total > GIANT_CLUSTER:
        fix = "lower eps, raise min_samples"
        fix += ", or add position (xy_scale 0.01)" if xy_scale is None else ", or raise xy_scale"
        warnings.append(
            f"one cluster holds {max(sizes) / total:.1%} of the samples: no segmentation; {fix}"
            + (" (colour only chains a photo's smooth gradients into one cluster)" if xy_scale is None else "")
        )
    post = report["postprocess"]
    if post is not None and post["noise"] == "fill" and not sizes:
        warnings.append("noise='fill' found no cluster to fill from: every sample is noise; raise eps")
    return warnings
