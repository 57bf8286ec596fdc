"""Suggesting eps for an image: the knee of its k-distance curve, beside the eps for a target noise fraction."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from gpuseg.engines.run import cluster_features
from gpuseg.features import build_features
from gpuseg.params import GIANT_CLUSTER, PARAMS, AlphaMode, ColorSpace, check
from gpuseg.tuning.eps_search import search_eps, start_eps
from gpuseg.tuning.kdist import k_distances, knee_index

CAPPED_WARNING = 0.05
"""Warn when more than this share of the curve sits at the search window's cap."""
KNEE_SLACK = 0.05
"""The knee is recommended when its noise fraction is at most the target's plus this (and no cluster holds
more than ``GIANT_CLUSTER``)."""


@dataclass(frozen=True)
class EpsSuggestion:
    """A suggested eps: the knee of the sorted k-distances of ``QUERY_SIZE`` random pixels, or the eps for a
    target noise fraction, whichever is recommended.

    ``k_distances`` is the sorted curve, ``knee`` its index and ``knee_eps`` its value, ``radius_px`` the
    stencil radius in pixels that ``eps`` implies with position features (None for colour only). With a
    ``target_noise``, DBSCAN ran on the image: ``knee_noise`` and ``knee_largest_cluster`` are the noise
    fraction and the largest cluster's share at the knee, ``target_eps`` (found in ``search_runs`` runs),
    ``target_noise_fraction`` and ``target_largest_cluster`` the same for the target, and ``recommended``
    ("knee" or "target") says which one ``eps`` is. ``warnings`` says what to mistrust.
    """

    eps: float
    min_samples: int
    k_distances: np.ndarray
    knee: int
    n_samples: int
    sample_size: int
    neighbours_in_sample: int
    xy_scale: float | None
    radius_px: int | None
    knee_eps: float = 0.0
    capped_fraction: float = 0.0
    knee_noise: float | None = None
    knee_largest_cluster: float | None = None
    target_noise: float | None = None
    target_eps: float | None = None
    target_noise_fraction: float | None = None
    target_largest_cluster: float | None = None
    recommended: str = "knee"
    search_runs: int = 0
    warnings: tuple[str, ...] = ()


def suggest_eps(
    image: np.ndarray,
    *,
    min_samples: int = PARAMS["min_samples"].default,
    color: ColorSpace = PARAMS["color"].default,
    alpha: AlphaMode = PARAMS["alpha"].default,
    xy_scale: float | None = PARAMS["xy_scale"].default,
    seed: int = 0,
    target_noise: float | None = None,
    device: str = PARAMS["device"].default,
    engine: str = PARAMS["engine"].default,
) -> EpsSuggestion:
    """Suggest eps for an image and ``min_samples``: the knee of its k-distance curve.

    The k-distance of a pixel is the distance within which it has ``min_samples`` samples (itself
    included), the eps at which it becomes a core pixel. Sorted, those distances rise slowly through the
    dense regions and steeply at the edges and the noise; the knee, the point of the curve farthest below
    the straight line from its first to its last point, separates the two.

    The curve is made of ``QUERY_SIZE`` random pixels (all of them in smaller images). With position
    features their neighbours are searched in a window of the pixel grid around each (exact up to the
    window's reach, see :func:`grid_k_distances`); with colour alone, among a random sample of
    ``SAMPLE_SIZE`` pixels, the neighbour count scaled by the sampling fraction. The same ``seed`` gives the
    same answer.

    With ``target_noise``, DBSCAN also runs on the image: at the knee, and in a search for the eps whose
    noise fraction is closest to the target (see :func:`gpuseg.tuning.eps_search.search_eps`). The knee is
    recommended when its noise is at most the target + ``KNEE_SLACK`` and no cluster holds more than
    ``GIANT_CLUSTER`` of the samples; otherwise the target's eps is. With colour alone, an eps at which one
    cluster holds more than ``GIANT_CLUSTER`` is lowered until none does (DBSCAN chains a photo's smooth
    gradients through colour space into one cluster).

    Parameters
    ----------
    image : ndarray
        As for :func:`gpuseg.segment`.
    min_samples : int
        The min_samples the segmentation will use (k).
    color, alpha, xy_scale
        The features, as for :func:`gpuseg.segment`.
    seed : int
        Seed of the random samples.
    target_noise : float, optional
        A noise fraction in [0, 1) to find eps for, beside the knee.
    device, engine
        Where the DBSCAN runs of ``target_noise`` go (see :func:`gpuseg.dbscan`).

    Returns
    -------
    EpsSuggestion

    Raises
    ------
    ValueError
        A bad ``min_samples``, ``target_noise`` or feature option, or an image with fewer than 2 samples.

    Examples
    --------
    >>> from gpuseg.data import shapes_image
    >>> suggestion = suggest_eps(shapes_image(60, 80, seed=2)[0], min_samples=20, device="cpu")
    >>> suggestion.recommended in ("knee", "target"), 0 < suggestion.eps < 1
    (True, True)
    """
    min_samples = check("min_samples", min_samples)
    target_noise = check("target_noise", target_noise)
    check("device", device)
    check("engine", engine)
    features = build_features(image, color=color, alpha=alpha, xy_scale=xy_scale)
    curve = k_distances(features, min_samples, seed)
    distances = curve.distances
    knee = knee_index(distances)
    knee_eps = float(distances[knee])
    if knee_eps <= 0:  # flat images: every k-distance is 0 up to the knee
        knee_eps = float(distances[distances > 0][0]) if (distances > 0).any() else 1e-6
    warnings = []
    if curve.capped_fraction > CAPPED_WARNING:
        warnings.append(
            f"{curve.capped_fraction:.0%} of the sampled pixels have fewer than min_samples={min_samples} "
            f"neighbours within {curve.cap:.4g} (the search window, {curve.window_px} px): their k-distances "
            "are capped there, so the curve's top is flat; a larger xy_scale or a smaller min_samples fits "
            "this image better"
        )
    suggestion = EpsSuggestion(
        knee_eps, min_samples, distances, knee, features.n_samples, curve.sample_size, curve.k,
        features.xy_scale, _radius(knee_eps, features.xy_scale), knee_eps=knee_eps,
        capped_fraction=curve.capped_fraction, warnings=tuple(warnings),
    )  # fmt: skip
    if target_noise is None:
        return suggestion
    return _with_target(suggestion, features, target_noise, device=device, engine=engine, seed=seed)


def _radius(eps: float, xy_scale: float | None) -> int | None:
    return None if xy_scale is None else int(math.floor(eps / xy_scale))


def _with_target(s: EpsSuggestion, features, target_noise: float, *, device: str, engine: str, seed: int):
    """The suggestion with the eps for ``target_noise`` beside the knee, and the one recommended."""
    knee_run = cluster_features(features, eps=s.knee_eps, min_samples=s.min_samples, device=device, engine=engine)
    knee_noise, knee_largest = _noise_and_largest(knee_run.labels)
    start, cap = start_eps(features, target_noise, s.min_samples, seed)
    search = search_eps(
        features, target_noise=target_noise, min_samples=s.min_samples, start=start, max_eps=cap,
        device=device, engine=engine,
    )  # fmt: skip
    eps, noise, largest = search.eps, search.noise_fraction, _noise_and_largest(search.run.labels)[1]
    warnings = list(s.warnings)
    if features.xy_scale is None and largest > GIANT_CLUSTER:  # colour only: step down until no cluster holds it all
        for _ in range(6):
            lower = eps / 1.5
            noise_l, largest_l = _noise_and_largest(
                cluster_features(features, eps=lower, min_samples=s.min_samples, device=device, engine=engine).labels
            )
            eps, noise, largest = lower, noise_l, largest_l
            if largest <= GIANT_CLUSTER:
                break
        warnings.append(
            f"colour only: at the eps for {target_noise:.0%} noise one cluster held more than "
            f"{GIANT_CLUSTER:.0%} of the pixels, so eps was lowered to {eps:.4g} ({noise:.0%} noise; "
            "--noise fill gives those pixels the nearest cluster)"
        )
    knee_usable = knee_noise <= target_noise + KNEE_SLACK and knee_largest <= GIANT_CLUSTER
    recommended = "knee" if knee_usable else "target"
    chosen = s.knee_eps if knee_usable else eps
    return replace(
        s, eps=chosen, radius_px=_radius(chosen, features.xy_scale), knee_noise=knee_noise,
        knee_largest_cluster=knee_largest, target_noise=target_noise, target_eps=eps,
        target_noise_fraction=noise, target_largest_cluster=largest, recommended=recommended,
        search_runs=len(search.tried), warnings=tuple(warnings),
    )  # fmt: skip


def _noise_and_largest(labels: np.ndarray) -> tuple[float, float]:
    """Noise fraction and the fraction of samples in the largest cluster."""
    n = labels.shape[0]
    if n == 0:
        return 0.0, 0.0
    clustered = labels[labels >= 0]
    largest = int(np.bincount(clustered).max()) if clustered.size else 0
    return float((labels < 0).sum() / n), largest / n


def plot_k_distances(suggestion: EpsSuggestion, path, *, overwrite: bool = False) -> None:
    """Write a PNG of the sorted k-distances with the knee and the suggested eps marked (atomically; an
    existing file is replaced only with ``overwrite``)."""
    from matplotlib.figure import Figure  # no pyplot: the host application's backend is left alone

    from gpuseg.io.write import atomic_write

    d = suggestion.k_distances
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    ax.plot(np.arange(d.shape[0]), d, lw=1.5, label=f"{suggestion.min_samples}-distance of each sampled pixel")
    ax.axhline(suggestion.eps, color="tab:red", lw=1, ls="--", label=f"suggested eps = {suggestion.eps:.4g}")
    ax.plot([suggestion.knee], [d[suggestion.knee]], "o", color="tab:red")
    ax.set_xlabel("pixels, sorted by k-distance")
    ax.set_ylabel(f"distance to the {suggestion.min_samples}th neighbour (feature units)")
    title = f"{suggestion.n_samples:,} samples, curve of {d.shape[0]:,} pixels"
    if suggestion.radius_px is not None:
        title += f"; stencil radius {suggestion.radius_px} px"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), overwrite=overwrite)
