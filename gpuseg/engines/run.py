"""dbscan(): parameter checks, device and engine choice, and the cluster stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpuseg._core.arrays import to_host
from gpuseg._core.device import Device, cpu_fallback, resolve_device
from gpuseg._core.interrupts import call_interruptibly
from gpuseg._core.timing import StageTimer
from gpuseg.engines import ENGINES, auto_engine, get_engine
from gpuseg.engines.base import Job
from gpuseg.errors import DeviceError, EngineUnavailableError
from gpuseg.features import Features, as_pixel_lattice, points_features
from gpuseg.params import check, distance_or_refuse


@dataclass(frozen=True)
class ClusterRun:
    """What the cluster stage did: labels of the samples (host array), the engine, device and notes."""

    labels: np.ndarray
    engine: str
    device: Device
    note: str | None
    sub_seconds: dict[str, float]


def dbscan(
    X: np.ndarray,
    *,
    eps: float,
    min_samples: int,
    sample_weight: np.ndarray | None = None,
    device: str = "auto",
    engine: str = "auto",
) -> np.ndarray:
    """DBSCAN labels of the rows of ``X``, identical to scikit-learn's.

    Parameters
    ----------
    X : array-like of shape (N, F)
        Feature rows (for an image, see :func:`gpuseg.pixel_features`).
    eps : float
        Neighbourhood radius (Euclidean, inclusive: distance <= eps).
    min_samples : int
        Weight of an eps-neighbourhood, the point itself included, that makes a point core.
    sample_weight : array-like of shape (N,), optional
        Weight of each row (default 1).
    device : {"auto", "cpu", "gpu"}
        "auto" uses a CUDA GPU when CuPy finds one, else the CPU; "gpu" without one is an error.
    engine : {"auto", "grid", "cells", "tree", "sklearn", "sklearn-merged", "cuml"}
        "auto" picks gpuseg's exact engine for the input (see the README's engine table): grid for pixels
        with position, cells for up to 5 features, tree above (cuML instead on a GPU where installed).

    Returns
    -------
    labels : ndarray of shape (N,), int64
        -1 for noise, clusters 0, 1, ... in order of their smallest core sample index.

    Raises
    ------
    ValueError
        A bad eps, min_samples, X (shape, NaN/inf), sample_weight (length, NaN/inf), device or engine.
    DeviceError
        ``device="gpu"`` and no usable CUDA device.
    EngineUnavailableError
        The engine's library is not installed, or it does not run on the device asked for.
    MemoryLimitError
        scikit-learn, or the tree engine's neighbour lists, would need more memory than the machine has.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 0.1], [0.1, 0.0], [5.0, 5.0]])
    >>> dbscan(X, eps=0.2, min_samples=3, device="cpu")
    array([ 0,  0,  0, -1])
    """
    return cluster_features(
        points_features(X),
        eps=eps,
        min_samples=min_samples,
        sample_weight=sample_weight,
        device=device,
        engine=engine,
    ).labels


def check_parameters(eps: float, min_samples: int) -> tuple[float, int]:
    """(eps, min_samples) as the engines take them, or ValueError naming the one refused (see
    :data:`gpuseg.params.PARAMS`)."""
    return distance_or_refuse("eps", eps), check("min_samples", min_samples)


def check_weights(sample_weight, n_samples: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(to_host(sample_weight), dtype=np.float64)
    if w.shape != (n_samples,):
        raise ValueError(f"sample_weight has shape {w.shape}; it needs one weight per sample: ({n_samples},)")
    if not np.isfinite(w).all():
        raise ValueError("sample_weight has NaN or infinite values; give finite weights")
    if not w.any():  # scikit-learn refuses these too
        raise ValueError("sample_weight is all zeros; give at least one non-zero weight (or none: every sample 1)")
    return w


def cluster_features(
    features: Features,
    *,
    eps: float,
    min_samples: int,
    sample_weight: np.ndarray | None = None,
    device: str = "auto",
    engine: str = "auto",
    timer: StageTimer | None = None,
) -> ClusterRun:
    """The cluster stage on prepared features: choose device and engine, move data, run, bring labels back.

    Records the to_device, cluster and to_host stages in ``timer``.
    """
    eps, min_samples = check_parameters(eps, min_samples)
    weights = check_weights(sample_weight, features.n_samples)
    spec_name, dev = _choose(engine, device)
    timer = timer or StageTimer()
    job = Job(features, eps, min_samples, weights, dev, timer)
    if spec_name == "auto":
        lattice = as_pixel_lattice(features)
        if lattice is not None:  # pixel_features() rows: clustered on their grid, the same matrix
            h, w = lattice.shape
            job.features = features = lattice
            job.note = f"rows recognised as a {w}x{h} pixel grid (xy_scale {lattice.xy_scale:g})"
        spec_name = auto_engine(job, dev.kind)
        if dev.kind not in ENGINES[spec_name].runners:
            why = f"no GPU engine runs {features.n_features} features here"
            if device == "gpu":  # never a silent CPU run
                raise DeviceError(
                    f"device='gpu': {why}: gpuseg's GPU engines take image features with position or up to 5 "
                    "features, and cuML (pip install 'gpuseg[cuml]') is not installed; use device='auto' or 'cpu'"
                )
            job.note = f"{why} ({spec_name} ran on the CPU)"
            job.device = dev = cpu_fallback(job.note)
    spec = ENGINES[spec_name]
    if features.image_rows and spec_name != "grid":  # only the grid engine keeps stacked images apart
        raise ValueError(f"a stack of images runs on engine='grid' only, not engine={spec_name!r}")
    reason = spec.why_not_input(job)
    if reason:
        raise ValueError(reason)
    if dev.kind == "cpu":
        job.features, job.weights = _on_host(features, weights)
    try:
        labels = _run(spec, job, weights)
    except Exception as exc:
        if job.device.kind != "gpu" or not is_gpu_out_of_memory(exc):
            raise
        message = f"the GPU ran out of memory for {features.n_samples:,} samples ({exc})"
        if device == "gpu" or "cpu" not in spec.runners:
            raise DeviceError(f"{message}; use device='cpu' (the same labels) or a smaller image") from exc
        job.device = cpu_fallback(f"{message}; ran on the CPU")
        job.features, job.weights = _on_host(features, weights)
        job.sub_seconds = {}
        labels = _run(spec, job, weights)
    return ClusterRun(labels.astype(np.int64, copy=False), spec_name, job.device, job.note, dict(job.sub_seconds))


def _on_host(features: Features, weights):
    """Features and weights as NumPy arrays (a CuPy image's features come back from its GPU)."""
    return features.map_arrays(to_host), None if weights is None else np.asarray(to_host(weights))


def _run(spec, job: Job, weights) -> np.ndarray:
    """to_device (on a GPU), cluster and to_host, each timed; labels of the samples on the host."""
    dev, timer = job.device, job.timer
    timer.sync = dev.synchronize
    if dev.kind == "gpu":
        from gpuseg.engines.gpu_common import features_to_device

        with timer.stage("to_device"):
            if spec.uploads_whole(job):  # else the engine uploads the features part by part
                job.features = features_to_device(job.features)
                if weights is not None:
                    job.weights = dev.xp.asarray(weights)
    with timer.stage("cluster"):
        runner = spec.runner(dev.kind)
        labels = call_interruptibly(lambda: runner(job), job.stop) if job.features.n_samples else np.zeros(0, np.int64)
    with timer.stage("to_host"):
        return np.asarray(to_host(labels))


def is_gpu_out_of_memory(exc: BaseException) -> bool:
    """CuPy's OutOfMemoryError, or a CUDA driver error that says out of memory."""
    return type(exc).__name__ == "OutOfMemoryError" or "OUT_OF_MEMORY" in str(exc).upper().replace(" ", "_")


def _choose(engine: str, device: str) -> tuple[str, Device]:
    """(engine name or "auto", device) for the request; errors name the parameter and the fix."""
    if engine == "auto":
        return "auto", resolve_device(device)
    spec = get_engine(engine)
    missing = spec.why_missing()
    if missing:
        raise EngineUnavailableError(f"engine={engine!r} cannot run: {missing}")
    kinds = tuple(spec.runners)
    if device == "auto":
        dev = resolve_device("auto") if "gpu" in kinds else resolve_device("cpu")
        if dev.kind not in kinds:  # a GPU-only engine on a machine without a GPU
            dev = resolve_device("gpu")
        return engine, dev
    if device in ("cpu", "gpu") and device not in kinds:
        raise EngineUnavailableError(
            f"engine={engine!r} runs on {' or '.join(kinds)} only, not device={device!r}; "
            f"use device='{kinds[0]}' or 'auto'"
        )
    return engine, resolve_device(device)
