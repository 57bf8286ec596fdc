"""The tree engine (general data, any number of features) against scikit-learn and the brute-force rule."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PROMPTLY_S, has_near_ties, interrupt_library_call, oracle_dbscan
from sklearn.cluster import DBSCAN
from sklearn.datasets import make_blobs

from gpuseg.engines import tree as tree_module
from gpuseg.engines.run import cluster_features
from gpuseg.errors import MemoryLimitError
from gpuseg.features import points_features


def reference(X, eps, min_samples, weights=None):
    return DBSCAN(eps=eps, min_samples=min_samples).fit(X, sample_weight=weights).labels_


def run_tree(X, eps, min_samples, weights=None, engine="tree"):
    return cluster_features(
        points_features(X), eps=eps, min_samples=min_samples, sample_weight=weights, engine=engine, device="cpu"
    )


def check(X, eps, min_samples, weights=None):
    """Labels identical to scikit-learn's (and to the rule's brute force on small inputs)."""
    got = run_tree(X, eps, min_samples, weights).labels
    if X.shape[0] <= 3000:
        np.testing.assert_array_equal(got, oracle_dbscan(X, eps, min_samples, weights))
        if has_near_ties(X, eps):
            return got
    np.testing.assert_array_equal(got, reference(X, eps, min_samples, weights))
    return got


@pytest.mark.parametrize("dims", [6, 8])
@pytest.mark.parametrize(
    ("eps", "min_samples"), [(1.0, 10), (1.5, 1), (0.7, 3), (2.5, 60)], ids=["typical", "ms1", "small", "large"]
)
def test_blobs_match_sklearn(dims, eps, min_samples, rng):
    X, _ = make_blobs(
        n_samples=int(rng.integers(1500, 4000)), n_features=dims, centers=5, random_state=rng.integers(2**31)
    )
    labels = check(X, eps, min_samples)
    if min_samples == 1:
        assert (labels >= 0).all()


def test_blobs_in_high_dimensions(rng):
    X, _ = make_blobs(n_samples=2000, n_features=30, centers=4, cluster_std=1.5, random_state=rng.integers(2**31))
    labels = check(X, 9.0, 5)
    assert labels.max() >= 1 and (labels == -1).any()


def test_duplicate_rows(rng):
    X = np.round(rng.normal(size=(3000, 6)), 0)  # few distinct rows, each many times
    check(X, 1.2, 8)
    check(np.repeat(rng.normal(size=(40, 7)), 5, axis=0)[rng.permutation(200)], 2.5, 6)


def test_weights_zero_negative_and_fractional(rng):
    X = np.round(rng.normal(size=(2000, 6)), 1)
    check(X, 1.1, 5, weights=rng.integers(0, 4, X.shape[0]).astype(float))
    check(X, 1.1, 5, weights=rng.choice([-2.0, -1.0, 0.0, 1.0, 3.0], size=X.shape[0]))
    check(X, 1.1, 3, weights=rng.choice([0.25, 0.5, 1.5], size=X.shape[0]))  # sums exact in any order


def test_weights_that_cancel_on_every_row_are_all_noise():
    X = np.repeat(np.eye(6) * 5, 2, axis=0)
    weights = np.tile([2.0, -2.0], 6)
    np.testing.assert_array_equal(run_tree(X, 0.5, 1, weights).labels, [-1] * 12)
    np.testing.assert_array_equal(oracle_dbscan(X, 0.5, 1, weights), [-1] * 12)


def two_lines_and_a_border(rng, right_first: bool) -> np.ndarray:
    """Two chains of 10 points along the first axis (spacing 0.2, jitter 1e-3 in 6-D), 1.8 apart, and a
    point halfway: with eps 0.95 it reaches one core of each chain and no more (3 with itself < 4)."""
    steps = 0.2 * np.arange(10)
    left = np.zeros((10, 6))
    left[:, 0] = 0.1 - steps
    right = np.zeros((10, 6))
    right[:, 0] = 1.9 + steps
    left[:, 1:] += rng.uniform(-1e-3, 1e-3, (10, 5))
    right[:, 1:] += rng.uniform(-1e-3, 1e-3, (10, 5))
    border = np.zeros((1, 6))
    border[0, 0] = 1.0
    return np.concatenate([border, right, left] if right_first else [border, left, right])


@pytest.mark.parametrize("right_first", [False, True])
def test_border_between_two_clusters_takes_the_smaller_number(rng, right_first):
    X = two_lines_and_a_border(rng, right_first)
    labels = check(X, 0.95, 4)
    assert labels[1:11].tolist() == [0] * 10 and labels[11:].tolist() == [1] * 10
    assert labels[0] == 0  # the border: within eps of a core of each cluster, in the smaller


def test_all_noise_and_a_single_row(rng):
    X = rng.normal(size=(500, 7))
    np.testing.assert_array_equal(check(X, 1e-3, 2), -1)
    np.testing.assert_array_equal(check(X, 1.0, 10_000), -1)
    np.testing.assert_array_equal(run_tree(X[:1], 1.0, 1).labels, [0])
    np.testing.assert_array_equal(run_tree(X[:1], 1.0, 2).labels, [-1])


@pytest.mark.parametrize(("chunk_rows", "leaf_size", "n"), [(1, 1, 3), (7, 2, 600), (1000, 5, 600)])
def test_chunks_and_leaves_of_any_size(rng, monkeypatch, chunk_rows, leaf_size, n):
    """Rows in chunks of one or of a few (many chunks each thread), and trees whose leaves hold one row."""
    monkeypatch.setattr(tree_module, "CHUNK_ROWS", chunk_rows)
    monkeypatch.setattr(tree_module, "LEAF_SIZE", leaf_size)
    monkeypatch.setattr(tree_module.os, "cpu_count", lambda: 3)
    X, _ = make_blobs(n_samples=n, n_features=6, centers=3, random_state=rng.integers(2**31))
    check(X, 1.3, 4)
    check(X, 1.3, 4, weights=rng.choice([-1.0, 1.0, 2.0], size=n))


def test_coordinates_on_a_lattice_and_pairs_exactly_eps_apart():
    """Integer coordinates: many equal values at every split, and pairs exactly eps apart (neighbours)."""
    X = np.array(np.meshgrid(*[np.arange(3.0)] * 6)).reshape(6, -1).T
    X = np.concatenate([X, X[::7]])
    np.testing.assert_array_equal(run_tree(X, 1.0, 4).labels, oracle_dbscan(X, 1.0, 4))
    np.testing.assert_array_equal(run_tree(X, 1.0, 14).labels, oracle_dbscan(X, 1.0, 14))


@pytest.mark.parametrize("base", [0.0, 1e6, 1e12])
def test_pairs_within_rounding_of_eps_follow_the_rule(rng, base):
    """Pairs eps * (1 +- 1e-7) apart at any magnitude: decided by the squared distance summed in column order."""
    rows = []
    for _ in range(60):
        a = base + rng.uniform(0, 50, 6)
        d = rng.normal(size=6)
        rows += [a, a + d / np.linalg.norm(d) * (1 + rng.choice([-1e-7, 1e-7]))]
    X = np.array(rows)
    np.testing.assert_array_equal(run_tree(X, 1.0, 2).labels, oracle_dbscan(X, 1.0, 2))


def test_huge_coordinates_do_not_overflow():
    X = np.array([[0.0] * 6, [1e200] * 6, [-1e300] * 6, [1e300] * 6])
    np.testing.assert_array_equal(run_tree(X, 1.0, 1).labels, [0, 1, 2, 3])


def test_auto_picks_the_tree_engine_above_five_features(rng):
    X = rng.normal(size=(300, 6))
    run = cluster_features(points_features(X), eps=1.5, min_samples=4, device="cpu")
    assert run.engine == "tree"
    assert set(run.sub_seconds) >= {"merge", "tree", "neighbours", "count", "union", "number", "borders"}
    np.testing.assert_array_equal(run.labels, reference(X, 1.5, 4))


def test_memory_guard_names_the_engine_and_the_fix(rng, monkeypatch):
    from gpuseg.engines import sklearn as sk

    monkeypatch.setattr(sk, "available_memory", lambda: 1000)
    X = rng.normal(size=(200, 6))
    with pytest.raises(MemoryLimitError, match=r"engine='tree' would need about .* Use a smaller eps: eps=3 puts"):
        run_tree(X, 3.0, 4)


def test_an_interrupted_build_or_query_leaves_the_rest_empty(rng):
    from gpuseg.engines.tree import cpu as k

    X = rng.normal(size=(100, 6))
    order, start, end, lower, upper, cols = k.build_tree(X, 8, np.int32, np.zeros(1, dtype=np.bool_))
    positions = np.arange(100, dtype=np.int64)
    ptr, idx = k.query(cols, order, start, end, lower, upper, positions, 4.0, False, np.ones(1, dtype=np.bool_))
    assert ptr.tolist() == [0] * 101 and idx.shape == (0,)
    ptr, idx = k.query(cols, order, start, end, lower, upper, positions, 4.0, False, np.zeros(1, dtype=np.bool_))
    assert (np.diff(ptr) >= 1).all() and idx.dtype == np.int32  # every row is its own neighbour
    stopped = np.ones(1, dtype=np.bool_)
    order, start, end, lower, upper, cols = k.build_tree(X, 8, np.int32, stopped)
    assert not start.any() and not end[1:].any()  # nodes below the root left empty: nothing to trip on
    ptr, idx = k.query(cols, order, start, end, lower, upper, positions, 4.0, False, stopped)
    assert ptr.tolist() == [0] * 101


def test_on_a_gpu_without_cuml_the_tree_engine_runs_on_the_cpu(monkeypatch, rng):
    import gpuseg.engines.cuml
    from gpuseg._core.device import Device
    from gpuseg.engines import run as cluster

    monkeypatch.setattr(cluster, "resolve_device", lambda d: Device("gpu", "fake"))
    monkeypatch.setattr(gpuseg.engines.cuml, "missing", lambda: "cuML is not installed")
    X = rng.normal(size=(300, 7))
    run = cluster_features(points_features(X), eps=1.8, min_samples=4)
    assert (run.engine, run.device.kind) == ("tree", "cpu")
    assert "7 features" in run.note and "tree ran on the CPU" in run.note
    np.testing.assert_array_equal(run.labels, reference(X, 1.8, 4))


def _labels_in_child(X, queue):
    queue.put(run_tree(X, 1.5, 4).labels)


def test_the_thread_pool_is_new_in_a_forked_child(rng, monkeypatch):
    """The pool is kept between runs; a child forked after a run must not wait on the parent's threads."""
    import multiprocessing as mp

    monkeypatch.setattr(tree_module, "CHUNK_ROWS", 50)  # several chunks: the pool runs
    X = rng.normal(size=(400, 6))
    expected = run_tree(X, 1.5, 4).labels
    context = mp.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_labels_in_child, args=(X, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(got, expected)


@pytest.mark.slow  # a signal sent to a subprocess mid-run
def test_an_interrupt_stops_the_tree_engine_at_once():

    raised_after, stopped_within = interrupt_library_call(
        "X = np.random.default_rng(0).normal(size=(150_000, 30))  # 30-D: the tree prunes little, minutes of work",
        'gpuseg.dbscan(X[:500], eps=2.0, min_samples=5, engine="tree", device="cpu")',
        'gpuseg.dbscan(X, eps=2.0, min_samples=5, engine="tree", device="cpu")',
    )
    assert raised_after < 1.0 + PROMPTLY_S and stopped_within < PROMPTLY_S
