"""Exactness at the extremes: huge coordinates and spreads beside eps, the merged scikit-learn path on few
rows, and the cell engine's fallbacks. Each is compared with the brute-force rule (tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import oracle_dbscan

import gpuseg
from gpuseg.engines.cells import layout as layout_module
from gpuseg.engines.run import cluster_features
from gpuseg.features import points_features


def labels(X, eps, min_samples, engine="auto", weights=None):
    return cluster_features(
        points_features(X), eps=eps, min_samples=min_samples, sample_weight=weights, engine=engine, device="cpu"
    )


@pytest.mark.parametrize("engine", ["auto", "cells"])
def test_far_apart_points_are_not_joined(engine):
    run = labels(np.array([[0.0, 0.0], [1e15, 1e15]]), 1e-6, 2, engine)
    np.testing.assert_array_equal(run.labels, [-1, -1])
    assert "too large beside eps" in run.note


@pytest.mark.parametrize("engine", ["auto", "cells"])
def test_huge_coordinates_do_not_overflow(engine):
    np.testing.assert_array_equal(labels(np.array([[0.0], [1e20]]), 1.0, 1, engine).labels, [0, 1])
    np.testing.assert_array_equal(labels(np.array([[-1e300], [1e300]]), 1.0, 1, engine).labels, [0, 1])


def pairs_on_the_edge(rng, base: float, eps: float, n: int = 60, dims: int = 3) -> np.ndarray:
    """Pairs of points at ``base`` whose distance is eps times (1 +- 1e-7): decided by the exact distance alone."""
    rows = []
    for _ in range(n):
        a = base + rng.uniform(0, 50 * eps, dims)
        d = rng.normal(size=dims)
        rows += [a, a + d / np.linalg.norm(d) * eps * (1 + rng.choice([-1e-7, 1e-7]))]
    return np.array(rows)


@pytest.mark.parametrize("base", [0.0, 1e3, 1e6, 1e9, 1e12, 1e15])
@pytest.mark.parametrize("engine", ["auto", "cells", "tree", "sklearn-merged"])
def test_pairs_near_eps_at_any_magnitude(rng, base, engine):
    eps = 1.0
    X = pairs_on_the_edge(rng, base, eps)
    np.testing.assert_array_equal(labels(X, eps, 2, engine).labels, oracle_dbscan(X, eps, 2))


@pytest.mark.parametrize("base", [1e9, 1e12, 1e15])
def test_pairs_near_eps_far_from_the_lowest_point(rng, base):
    """A point at 0 puts the pairs ~base/eps cells from the grid's origin, where float64 cell coordinates round
    by up to a cell: a pair farther apart than eps could share a cell, one within eps could be skipped."""
    X = np.concatenate([[[0.0]], pairs_on_the_edge(rng, base, 1.0, n=300, dims=1)])
    for engine in ("auto", "cells"):
        np.testing.assert_array_equal(labels(X, 1.0, 2, engine).labels, oracle_dbscan(X, 1.0, 2))


def test_cells_stay_exact_when_coordinates_round_at_the_limit(rng, monkeypatch):
    """Just below the rounding the cells accept, the cell engine itself runs (no fallback) and stays exact."""
    X = pairs_on_the_edge(rng, 1e6, 1.0, n=200, dims=2)
    run = labels(X, 1.0, 2, "cells")
    assert run.note is None
    np.testing.assert_array_equal(run.labels, oracle_dbscan(X, 1.0, 2))


def test_merged_scikit_learn_on_few_rows_follows_the_rule(rng):
    """On few distinct rows scikit-learn would pick brute force, whose |a|^2 + |b|^2 - 2ab expansion wrongly
    joins rows near 1e6 just farther apart than eps (a quarter of such pairs, measured)."""
    for _ in range(40):
        a = rng.uniform(1e6, 2e6, 3)
        d = rng.normal(size=3)
        X = np.array([a, a + d / np.linalg.norm(d)])
        eps = float(np.sqrt(((X[0] - X[1]) ** 2).sum())) * (1 - 1e-7)
        for engine in ("sklearn-merged", "tree", "auto"):
            np.testing.assert_array_equal(labels(X, eps, 2, engine).labels, [-1, -1])


def test_identical_rows_are_always_neighbours():
    X = np.repeat(np.random.default_rng(3).normal(size=(3, 8)) * 100, 5, axis=0)
    for engine in ("auto", "tree", "sklearn-merged"):
        np.testing.assert_array_equal(labels(X, 1e-9, 5, engine).labels, np.repeat([0, 1, 2], 5))


def test_the_binary_search_lookup_of_large_grids(rng, monkeypatch):
    monkeypatch.setattr(layout_module, "DENSE_TABLE_CELLS", 8)
    X = rng.normal(size=(500, 3))
    np.testing.assert_array_equal(labels(X, 0.3, 4, "cells").labels, oracle_dbscan(X, 0.3, 4))


def test_more_cells_than_62_bit_keys_fall_back_exactly(rng):
    X = np.concatenate([rng.normal(size=(100, 5)), [[1e13] * 5]])
    run = labels(X, 0.5, 3, "cells")
    assert run.note is not None and "scikit-learn on merged rows ran" in run.note
    np.testing.assert_array_equal(run.labels, oracle_dbscan(X, 0.5, 3))


def test_fractional_weights_near_min_samples(rng):
    X = rng.normal(size=(300, 2)).round(1)
    weights = rng.choice([0.25, 0.5, 0.75, 1.5], size=300)  # sums exact in any order: no rounding at min_samples
    got = gpuseg.dbscan(X, eps=0.23, min_samples=2, sample_weight=weights, device="cpu")
    np.testing.assert_array_equal(got, oracle_dbscan(X, 0.23, 2, weights))


def test_weights_that_cancel_on_every_merged_row_are_all_noise():
    X = np.repeat([[0.0, 0.0], [5.0, 5.0]], 2, axis=0)
    weights = np.array([2.0, -2.0, 1.5, -1.5])
    for engine in ("auto", "cells", "tree", "sklearn-merged"):
        np.testing.assert_array_equal(labels(X, 0.5, 1, engine, weights).labels, [-1] * 4)
    np.testing.assert_array_equal(oracle_dbscan(X, 0.5, 1, weights), [-1] * 4)


def test_the_stencil_of_a_very_wide_image_allows_for_rounded_positions():
    """Positions x * xy_scale round by up to an ulp of x * xy_scale: on an image millions of pixels wide a
    pair two pixels apart, just farther than eps in exact arithmetic, can be within eps by the rule."""
    from gpuseg.engines.grid.stencil import stencil

    s, eps, width = 0.3, 0.6 * (1 - 5e-9), 2**28
    x = np.arange(2**27, 2**27 + 200_000, dtype=np.int64)
    within = ((x + 2) * s - x * s) ** 2 <= eps * eps  # as the grid engine computes it: xs[x + 2] - xs[x]
    assert within.any()
    dy, dx = stencil(eps, s, 1, width)
    assert ((dy == 0) & (dx == 2)).any()
