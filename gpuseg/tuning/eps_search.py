"""eps for a target noise fraction: a bracketed search over eps with the fast engines.

With min_samples fixed, a larger eps never makes a pixel noise that was not (every core pixel stays core and
every neighbour stays a neighbour), so the noise fraction falls step by step as eps grows and a bracketing
search finds the eps whose noise is closest to a target in a few runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gpuseg._core.timing import StageTimer
from gpuseg.engines.run import ClusterRun, cluster_features
from gpuseg.features import Features
from gpuseg.params import check
from gpuseg.tuning.kdist import k_distances

TOLERANCE = 0.01
"""The search stops once the noise fraction is this close to the target."""
MAX_RUNS = 10
"""At most this many clustering runs per search."""


@dataclass
class EpsSearch:
    """The outcome of :func:`search_eps`: the chosen ``eps``, its ``noise_fraction``, every ``(eps, noise)``
    tried in order, and the chosen run (its labels, engine and timings) in ``run``."""

    eps: float
    noise_fraction: float
    target_noise: float
    tried: list[tuple[float, float]]
    run: ClusterRun
    timer: StageTimer = field(repr=False)

    def as_report(self) -> dict:
        return {
            "target_noise": self.target_noise,
            "eps": self.eps,
            "noise_fraction": self.noise_fraction,
            "runs": [{"eps": e, "noise_fraction": f} for e, f in self.tried],
        }


def search_eps(
    features: Features,
    *,
    target_noise: float,
    min_samples: int,
    start: float,
    device: str = "auto",
    engine: str = "auto",
    max_eps: float | None = None,
    tolerance: float = TOLERANCE,
    max_runs: int = MAX_RUNS,
) -> EpsSearch:
    """The eps whose noise fraction is closest to ``target_noise`` among at most ``max_runs`` runs.

    Starts at ``start``, doubles or halves eps until the target is bracketed (noise above it at the lower
    end, at or below it at the upper end), then narrows the bracket by interpolating the noise fraction
    (kept a tenth of the bracket away from its ends, so it narrows even where the noise is a step). Stops
    once a run is within ``tolerance`` of the target, the bracket is narrower than 1e-4 of eps, or the runs
    are spent. ``max_eps`` caps the upward steps (a larger eps can make the stencil of the grid engine
    too large to run).

    Returns
    -------
    EpsSearch
    """
    target_noise = check("target_noise", target_noise)
    tried: list[tuple[float, float]] = []
    best: tuple[float, float, ClusterRun, StageTimer] | None = None

    def noise_at(eps: float) -> float:
        nonlocal best
        timer = StageTimer()
        run = cluster_features(features, eps=eps, min_samples=min_samples, device=device, engine=engine, timer=timer)
        noise = float((run.labels < 0).mean()) if run.labels.size else 0.0
        tried.append((eps, noise))
        if best is None or abs(noise - target_noise) < abs(best[1] - target_noise):
            best = (eps, noise, run, timer)
        return noise

    lo: float | None = None
    hi: float | None = None  # noise(lo) > target >= noise(hi); g_* are the noise fractions less the target
    g_lo = g_hi = 0.0
    kept_before = None
    eps = float(start)
    g = noise_at(eps) - target_noise
    while len(tried) < max_runs and abs(g) > tolerance:
        if g > 0:
            lo, g_lo, kept = eps, g, "hi"
        else:
            hi, g_hi, kept = eps, g, "lo"
        if hi is None:
            assert lo is not None  # one end is set by every run
            if max_eps is not None and lo >= max_eps:
                break
            eps = lo * 2 if max_eps is None else min(lo * 2, max_eps)
        elif lo is None:
            eps = hi / 2
        else:
            if hi - lo <= 1e-4 * hi:
                break
            if kept == kept_before:  # the Illinois rule: an end kept twice counts half, so both ends move
                if kept == "hi":
                    g_hi /= 2
                else:
                    g_lo /= 2
            t = g_lo / (g_lo - g_hi)
            eps = lo + min(max(t, 0.05), 0.95) * (hi - lo)
        kept_before = kept
        g = noise_at(eps) - target_noise
    assert best is not None
    return EpsSearch(best[0], best[1], target_noise, tried, best[2], best[3])


def start_eps(features: Features, target_noise: float, min_samples: int, seed: int = 0) -> tuple[float, float]:
    """Where to start the search, and a cap for it: the eps at which a fraction ``1 - target_noise`` of a
    sample of pixels are core (their k-distance; noise is at most the pixels that are not core), and twice
    the largest k-distance sampled."""
    distances = k_distances(features, min_samples, seed).distances
    positive = distances[distances > 0]
    if positive.size == 0:  # a flat image: every pixel is core at any eps
        return 1e-6, 1e-3
    q = float(np.quantile(distances, 1 - target_noise))
    start = q if q > 0 else float(positive[0])
    return start, 2 * float(distances[-1]) if math.isfinite(distances[-1]) else 2 * start
