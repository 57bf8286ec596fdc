"""Every exact engine against scikit-learn (and a brute-force oracle where rounding decides a pair)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import has_near_ties, oracle_dbscan
from sklearn.cluster import DBSCAN
from sklearn.datasets import make_blobs

from gpuseg.data import logo_image, shapes_image
from gpuseg.engines.run import cluster_features
from gpuseg.features import build_features, pixel_features, points_features

CPU_ENGINES = ["auto", "cells", "tree", "sklearn-merged"]


def reference(X, eps, min_samples, weights=None):
    return DBSCAN(eps=eps, min_samples=min_samples).fit(X, sample_weight=weights).labels_


def check_engine(features, eps, min_samples, engine, weights=None, device="cpu"):
    """One test body for every engine: labels identical to scikit-learn's on the same X and weights."""
    X = features.matrix()
    got = cluster_features(
        features, eps=eps, min_samples=min_samples, sample_weight=weights, engine=engine, device=device
    ).labels
    if X.shape[0] <= 4000:
        oracle = oracle_dbscan(X, eps, min_samples, weights)
        np.testing.assert_array_equal(got, oracle)
        if has_near_ties(X, eps):
            return got
    np.testing.assert_array_equal(got, reference(X, eps, min_samples, weights))
    return got


# ------------------------------------------------------------------------------------------ points


@pytest.mark.parametrize("engine", CPU_ENGINES)
@pytest.mark.parametrize("dims", [1, 2, 3, 4, 5])
def test_random_blobs_seeded(engine, dims, rng):
    n = int(rng.integers(200, 1500))
    X, _ = make_blobs(n_samples=n, n_features=dims, centers=int(rng.integers(1, 6)), random_state=rng.integers(2**31))
    eps = float(rng.uniform(0.2, 1.2))
    min_samples = int(rng.integers(1, 25))
    check_engine(points_features(X), eps, min_samples, engine)


@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_duplicate_heavy_points_with_weights(engine, rng):
    X = np.round(rng.normal(size=(2000, 3)), 1)  # many exact duplicates
    w = rng.integers(0, 4, X.shape[0]).astype(float)
    check_engine(points_features(X), 0.37, 9, engine, weights=w)


@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_seed_make_blobs_example(engine):
    from sklearn.preprocessing import StandardScaler

    X, _ = make_blobs(n_samples=750, centers=[[1, 1], [-1, -1], [1, -1]], cluster_std=0.4, random_state=0)
    X = StandardScaler().fit_transform(X)
    labels = check_engine(points_features(X), 0.3, 10, engine)
    assert np.unique(labels).tolist() == [-1, 0, 1, 2]


@pytest.mark.parametrize("engine", CPU_ENGINES)
@pytest.mark.parametrize(
    ("eps", "min_samples"),
    [(0.3, 1), (1e-6, 3), (100.0, 5), (0.3, 10_000)],
    ids=["min_samples_1", "all_noise", "one_cluster", "min_samples_above_n"],
)
def test_extremes(engine, eps, min_samples, rng):
    X = rng.normal(size=(300, 2))
    labels = check_engine(points_features(X), eps, min_samples, engine)
    if min_samples == 1:
        assert (labels >= 0).all()
    if eps == 1e-6 or min_samples == 10_000:
        assert (labels == -1).all()
    if eps == 100.0:
        assert (labels == 0).all()


def test_border_point_takes_smallest_cluster():
    # Two clusters (x = 0..0.3 and 2.0..2.3, cores: 4 points within 0.3) and a non-core point at 1.15,
    # within eps 0.87 of 0.3 and of 2.0 only (ball of 3 < 4): it goes to the smaller cluster number.
    X = np.array([[0.0], [0.1], [0.2], [0.3], [2.0], [2.1], [2.2], [2.3], [1.15]])
    for engine in CPU_ENGINES:
        got = cluster_features(points_features(X), eps=0.87, min_samples=4, engine=engine).labels
        assert got.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0], engine
    # Numbered by smallest core index: put the right cluster first, and it becomes 0 and takes the border.
    Y = X[[4, 5, 6, 7, 0, 1, 2, 3, 8]]
    for engine in CPU_ENGINES:
        got = cluster_features(points_features(Y), eps=0.87, min_samples=4, engine=engine).labels
        assert got.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0], engine


def test_hand_computed_toy():
    # 0-1-2 chained cores (gap 1), 3 a border of 2 only, 4 alone; eps 1, min_samples 2 (self included).
    X = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 1.0], [9.0, 9.0]])
    for engine in CPU_ENGINES:
        got = cluster_features(points_features(X), eps=1.0, min_samples=3, engine=engine).labels
        # ball sizes: 0:{0,1}=2, 1:{0,1,2}=3, 2:{1,2,3}=3, 3:{2,3}=2 -> cores 1, 2; borders 0, 3; 4 noise
        assert got.tolist() == [0, 0, 0, 0, -1], engine


# ------------------------------------------------------------------------------------------ images


def astronaut(h=64, w=80):
    from skimage import data

    return data.astronaut()[100 : 100 + h, 150 : 150 + w]


IMAGE_CASES = {
    "photo_rgb_xy": (lambda: astronaut(), dict(color="rgb", xy_scale=0.01), 0.0523, 12),
    "photo_lab_xy": (lambda: astronaut(), dict(color="lab", xy_scale=0.02), 0.0712, 8),
    "photo_gray_xy": (lambda: astronaut(), dict(color="gray", xy_scale=0.005), 0.0213, 15),
    "photo_rgb": (lambda: astronaut(), dict(color="rgb"), 0.0311, 20),
    "photo_lab": (lambda: astronaut(), dict(color="lab"), 0.0407, 10),
    "shapes_xy": (lambda: shapes_image(48, 64, seed=1)[0], dict(xy_scale=0.01), 0.0523, 20),
    "logo_alpha_feature": (lambda: logo_image(60), dict(alpha="feature"), 0.0101, 20),
    "logo_alpha_mask_xy": (lambda: logo_image(60), dict(alpha="mask", xy_scale=0.01), 0.0523, 10),
    "logo_alpha_mask": (lambda: logo_image(60), dict(alpha="mask"), 0.0303, 10),
    "uint16_xy": (lambda: astronaut().astype(np.uint16) * 257 + 3, dict(xy_scale=0.01), 0.0523, 12),
    "float_xy": (lambda: astronaut().astype(np.float32) / 255, dict(xy_scale=0.01), 0.0523, 12),
    "one_pixel": (lambda: astronaut(1, 1), dict(xy_scale=0.01), 0.05, 1),
    "one_row": (lambda: astronaut(1, 80), dict(xy_scale=0.01), 0.0523, 3),
    "one_column": (lambda: astronaut(70, 1), dict(xy_scale=0.01), 0.0523, 3),
}


IMAGE_RUNS = [
    (case, engine)
    for case, (_, options, _, _) in IMAGE_CASES.items()
    for engine in CPU_ENGINES + (["grid"] if "xy_scale" in options else [])
]


@pytest.mark.parametrize(("case", "engine"), IMAGE_RUNS)
def test_images(case, engine):
    make, options, eps, min_samples = IMAGE_CASES[case]
    check_engine(build_features(make(), **options), eps, min_samples, engine)


@pytest.mark.parametrize("engine", ["grid", "cells", "tree"])
def test_random_images_with_weights_seeded(engine, rng):
    h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    levels = int(rng.integers(2, 12))  # few levels: many equal colours and near-equal distances
    image = (rng.integers(0, levels, (h, w, 3)) * (255 // levels)).astype(np.uint8)
    xy = float(rng.choice([0.003, 0.01, 0.02]))
    features = build_features(image, xy_scale=xy)
    weights = rng.uniform(0, 3, h * w)
    eps = float(rng.uniform(0.01, 0.2))
    check_engine(features, eps, int(rng.integers(1, 30)), engine, weights=weights)


def test_alpha_mask_with_no_samples_left():
    image = logo_image(40)
    image[:, :, 3] = 0
    features = build_features(image, alpha="mask", xy_scale=0.01)
    assert features.n_samples == 0
    for engine in ("grid", "cells"):
        got = cluster_features(features, eps=0.05, min_samples=3, engine=engine).labels
        assert got.shape == (0,)


def test_grid_refuses_color_only_features():
    features = build_features(astronaut(8, 8))
    with pytest.raises(ValueError, match="engine='grid' needs image features with position"):
        cluster_features(features, eps=0.05, min_samples=3, engine="grid")


def test_cells_refuses_many_dimensions_and_auto_falls_back(rng):
    X = rng.normal(size=(200, 7))
    with pytest.raises(ValueError, match="up to 5 features"):
        cluster_features(points_features(X), eps=1.0, min_samples=3, engine="cells")
    run = cluster_features(points_features(X), eps=2.0, min_samples=3, engine="auto")
    assert run.engine == "tree"
    np.testing.assert_array_equal(run.labels, reference(X, 2.0, 3))


@pytest.mark.parametrize("engine", ["auto", "grid", "cells", "tree", "sklearn-merged"])
def test_negative_weights_match_sklearn(engine, rng):
    """scikit-learn accepts negative weights (they can keep neighbours from being core): every engine sums such
    neighbourhoods whole instead of stopping once min_samples is reached."""
    image = (rng.integers(0, 4, (18, 22, 3)) * 60).astype(np.uint8)
    weights = rng.choice([-3.0, -1.0, 0.5, 1.0, 2.0, 4.0], size=18 * 22)
    labels = check_engine(build_features(image, xy_scale=0.02), 0.13, 3, engine, weights=weights)
    assert (labels >= 0).any() and (labels < 0).any()


def test_negative_weights_on_points_go_through_auto(rng):
    X = rng.normal(size=(400, 3)).round(1)  # repeated rows: merged, their weights summed
    weights = rng.choice([-2.0, 1.0, 3.0], size=400)
    check_engine(points_features(X), 0.43, 4, "auto", weights=weights)


def test_all_zero_weights_are_refused_as_scikit_learn_does():
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match="at least one non-zero number"):
        reference(X, 0.5, 2, np.zeros(5))
    with pytest.raises(ValueError, match="sample_weight is all zeros"):
        cluster_features(points_features(X), eps=0.5, min_samples=2, sample_weight=np.zeros(5))


def test_auto_picks_grid_for_position_and_cells_for_color():
    image = astronaut(16, 16)
    assert cluster_features(build_features(image, xy_scale=0.01), eps=0.05, min_samples=3).engine == "grid"
    assert cluster_features(build_features(image), eps=0.05, min_samples=3).engine == "cells"


def test_seed_rgba_recipe_matches_sklearn_on_merged_rows():
    # The seed's recipe on a 500x500 RGBA logo: alpha as a feature, eps 0.01, min_samples 500.
    # scikit-learn on the raw 250,000 rows needs > 16 GB, so the reference is scikit-learn on merged rows
    # (identical rows collapsed into sample weights, which gives the same labels: tested above).
    features = build_features(logo_image(500), alpha="feature")
    run = cluster_features(features, eps=0.01, min_samples=500)
    assert run.engine == "cells"
    merged = cluster_features(features, eps=0.01, min_samples=500, engine="sklearn-merged").labels
    np.testing.assert_array_equal(run.labels, merged)
    assert run.labels.max() >= 2


@pytest.mark.parametrize("high", [50, 2**24, 2**62])
def test_every_merge_gives_first_occurrences_in_order(rng, high):
    from gpuseg.engines.merge import merge_dense, merge_hashed, merge_sorted

    key = (
        rng.integers(0, high, 3000, dtype=np.uint64) if high < 2**63 else rng.integers(0, 2**63, 3000).astype(np.uint64)
    )
    key = key[rng.integers(0, 3000, 3000)]  # repeats
    _, first_seen = np.unique(key, return_index=True)
    expected_first = np.sort(first_seen)
    for first, inverse in (merge_hashed(key), merge_sorted(key)):
        np.testing.assert_array_equal(first, expected_first)
        np.testing.assert_array_equal(key[first][inverse], key)
    if high <= 2**24:
        first, inverse = merge_dense(key, high, np)
        np.testing.assert_array_equal(first, expected_first)
        np.testing.assert_array_equal(key[first][inverse], key)


# ------------------------------------------------------------------------------ rows of a pixel lattice


@pytest.mark.parametrize(("h", "w", "options"), [(30, 40, {}), (25, 1, {}), (1, 60, {}), (20, 30, {"color": "lab"})])
def test_pixel_feature_rows_run_on_their_grid(h, w, options, rng):
    image = (rng.integers(0, 5, (h, w, 3)) * 50).astype(np.uint8)
    X = pixel_features(image, xy_scale=0.013, **options)
    run = cluster_features(points_features(X), eps=0.061, min_samples=4)
    assert run.engine == "grid" and f"{w}x{h} pixel grid" in run.note
    np.testing.assert_array_equal(run.labels, oracle_dbscan(X, 0.061, 4))
    weights = rng.uniform(0.5, 3, h * w)
    check_engine(points_features(X), 0.061, 4, "auto", weights=weights)


@pytest.mark.parametrize("change", ["shuffled", "masked", "nudged", "scaled y"])
def test_rows_that_are_not_a_full_lattice_are_clustered_as_points(change, rng):
    image = (rng.integers(0, 5, (12, 16, 3)) * 50).astype(np.uint8)
    X = pixel_features(image, xy_scale=0.02)
    if change == "shuffled":
        X = X[rng.permutation(X.shape[0])]
    elif change == "masked":
        X = X[1:]
    elif change == "nudged":
        X[7, -2] += 1e-12
    else:
        X[:, -1] *= 1.5
    run = cluster_features(points_features(X), eps=0.07, min_samples=3)
    assert run.engine != "grid" and run.note is None
    np.testing.assert_array_equal(run.labels, oracle_dbscan(X, 0.07, 3))
