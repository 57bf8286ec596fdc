"""The GPU engines' kernels against scikit-learn and the CPU engines.

Without a GPU they run under numba's CUDA simulator (set up in conftest.py) on NumPy arrays; with
NUMBA_ENABLE_CUDASIM=0 on a CUDA machine the same tests run the real kernels on CuPy arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import has_near_ties, oracle_dbscan
from sklearn.datasets import make_blobs

from gpuseg._core.device import Device
from gpuseg.data import logo_image, shapes_image
from gpuseg.engines.base import Job
from gpuseg.engines.gpu_common import SIMULATED
from gpuseg.features import build_features, points_features

pytestmark = pytest.mark.slow  # the simulator runs a Python thread per GPU thread: seconds per kernel

if SIMULATED:
    xp = np
else:  # pragma: no cover - real GPU runs
    cupy = pytest.importorskip("cupy", reason="real GPU kernels need CuPy")
    xp = cupy


def run_on_device(engine, features, eps, min_samples, weights=None, band_rows=None):
    from gpuseg.engines.cells import run_cells
    from gpuseg.engines.grid import run_grid

    if xp is not np:  # pragma: no cover
        features = features.map_arrays(xp.asarray)
        weights = None if weights is None else xp.asarray(weights)
    job = Job(features, eps, min_samples, weights, Device("gpu", "simulator" if SIMULATED else "gpu"))
    labels = run_grid(job, xp, band_rows=band_rows) if engine == "grid" else run_cells(job, xp)
    return labels if xp is np else labels.get()


def check(engine, features, eps, min_samples, weights=None, band_rows=None):
    X = features.matrix()
    got = run_on_device(engine, features, eps, min_samples, weights, band_rows)
    np.testing.assert_array_equal(got, oracle_dbscan(X, eps, min_samples, weights))
    if not has_near_ties(X, eps):
        from sklearn.cluster import DBSCAN

        ref = DBSCAN(eps=eps, min_samples=min_samples).fit(X, sample_weight=weights).labels_
        np.testing.assert_array_equal(got, ref)


def crop(h, w):
    from skimage import data

    return data.astronaut()[120 : 120 + h, 160 : 160 + w]


GRID_CASES = {
    "rgb": (lambda: crop(24, 20), dict(xy_scale=0.01), 0.0523, 10),
    "lab": (lambda: crop(20, 22), dict(color="lab", xy_scale=0.02), 0.0712, 6),
    "uint16": (lambda: crop(16, 16).astype(np.uint16) * 257, dict(xy_scale=0.01), 0.0523, 8),
    "float": (lambda: crop(16, 16).astype(np.float32) / 255, dict(xy_scale=0.01), 0.0523, 8),
    "alpha_mask": (lambda: logo_image(24), dict(alpha="mask", xy_scale=0.01), 0.0523, 5),
    "shapes": (lambda: shapes_image(20, 24, seed=4)[0], dict(xy_scale=0.01), 0.0523, 12),
    "one_row": (lambda: crop(1, 40), dict(xy_scale=0.01), 0.0523, 3),
    "one_pixel": (lambda: crop(1, 1), dict(xy_scale=0.01), 0.05, 1),
}


@pytest.mark.parametrize("case", list(GRID_CASES))
def test_grid_kernels(case):
    make, options, eps, min_samples = GRID_CASES[case]
    check("grid", build_features(make(), **options), eps, min_samples)


def test_grid_kernels_random_images_with_weights(rng):
    h, w = int(rng.integers(1, 20)), int(rng.integers(1, 20))
    image = (rng.integers(0, 5, (h, w, 3)) * 60).astype(np.uint8)
    weights = rng.uniform(0, 3, h * w)
    eps = float(rng.uniform(0.02, 0.2))
    check("grid", build_features(image, xy_scale=0.01), eps, int(rng.integers(1, 20)), weights)


CELL_CASES = {
    "rgb": (lambda: build_features(crop(24, 20)), 0.0311, 8),
    "lab": (lambda: build_features(crop(20, 20), color="lab"), 0.0407, 5),
    "rgba_feature": (lambda: build_features(logo_image(24), alpha="feature"), 0.0101, 6),
    "gray": (lambda: build_features(crop(20, 20), color="gray"), 0.0213, 6),
    "blobs_2d": (lambda: points_features(make_blobs(300, n_features=2, random_state=3)[0]), 0.61, 6),
    "blobs_3d": (lambda: points_features(make_blobs(300, n_features=3, random_state=1)[0]), 0.8, 5),
}


@pytest.mark.parametrize("case", list(CELL_CASES))
def test_cell_kernels(case):
    make, eps, min_samples = CELL_CASES[case]
    check("cells", make(), eps, min_samples)


def test_cell_kernels_random_duplicates_with_weights(rng):
    X = np.round(rng.normal(size=(400, int(rng.integers(1, 4)))), 1)
    weights = rng.integers(0, 4, X.shape[0]).astype(float)
    check("cells", points_features(X), float(rng.uniform(0.2, 0.6)), int(rng.integers(1, 15)), weights)


def test_gpu_and_cpu_engines_agree_on_a_larger_image():
    from gpuseg.engines.run import cluster_features

    features = build_features(shapes_image(32, 36, seed=7)[0], xy_scale=0.01)
    cpu = cluster_features(features, eps=0.0523, min_samples=15, engine="grid", device="cpu").labels
    np.testing.assert_array_equal(run_on_device("grid", features, 0.0523, 15), cpu)


def test_scatter_min_kernel(rng):
    from gpuseg.engines.gpu_common import THREADS_1D, blocks_1d, scatter_min_kernel

    index = rng.integers(0, 20, 300)
    values = rng.integers(0, 1000, 300)
    target = np.full(20, 10**6, dtype=np.int64)
    scatter_min_kernel[blocks_1d(300), THREADS_1D](target, index, values)
    expected = np.full(20, 10**6, dtype=np.int64)
    np.minimum.at(expected, index, values)
    np.testing.assert_array_equal(target, expected)


@pytest.mark.parametrize("case", ["rgb", "alpha_mask", "lab"])
def test_grid_plain_kernels_for_stencils_too_large_for_a_tile(case, monkeypatch):
    from gpuseg.engines.grid import cuda as grid_cuda

    monkeypatch.setattr(grid_cuda, "TILE_BYTES", 0)
    grid_cuda.kernels.cache_clear()
    try:
        make, options, eps, min_samples = GRID_CASES[case]
        assert not grid_cuda.tile_fits(3, 5)
        check("grid", build_features(make(), **options), eps, min_samples)
    finally:
        grid_cuda.kernels.cache_clear()


@pytest.mark.parametrize(
    ("case", "band_rows"),
    [
        pytest.param("rgb", 3, marks=pytest.mark.slow),
        pytest.param("alpha_mask", 2, marks=pytest.mark.slow),
        ("shapes", 7),
    ],
)
def test_grid_in_bands_of_rows_is_exact(case, band_rows):
    # Images larger than free device memory are done in bands with a halo; force small bands here.
    make, options, eps, min_samples = GRID_CASES[case]
    check("grid", build_features(make(), **options), eps, min_samples, band_rows=band_rows)


def test_grid_in_bands_with_weights(rng):
    image = (rng.integers(0, 4, (14, 11, 3)) * 80).astype(np.uint8)
    weights = rng.uniform(0, 3, image.shape[0] * image.shape[1])
    features = build_features(image, xy_scale=0.01)
    check("grid", features, 0.0523, 6, weights=weights, band_rows=int(rng.integers(1, 6)))


@pytest.mark.parametrize("engine", ["grid", "cells"])
def test_negative_and_fractional_weights(engine, rng):
    image = (rng.integers(0, 4, (14, 17, 3)) * 60).astype(np.uint8)
    weights = rng.choice([-2.0, -0.5, 0.25, 0.75, 1.5, 3.0], size=14 * 17)  # exact binary fractions
    # the grid engine with position; the cells engine on colour alone (3-D: 7**3 neighbour cells, not 7**5)
    xy_scale = 0.02 if engine == "grid" else None
    check(engine, build_features(image, xy_scale=xy_scale), 0.13, 2, weights=weights)


def test_cell_weights_are_exact_beyond_two_to_the_53():
    """One heavy point, then a cell of three points weighing 1 + 1 + 2: a difference of prefix sums rounds
    that to 2, below min_samples 4; summed one by one it is 4, and the three points are a cluster."""
    X = np.array([[0.0], [10.0], [10.001], [10.002]])
    weights = np.array([2.0**53, 1.0, 1.0, 2.0])
    got = run_on_device("cells", points_features(X), 0.1, 4, weights)
    np.testing.assert_array_equal(got, [0, 1, 1, 1])
    np.testing.assert_array_equal(got, oracle_dbscan(X, 0.1, 4, weights))


def test_merged_weights_are_summed_in_input_order_as_on_the_cpu(rng):
    from gpuseg.engines.merge import ordered_sums

    inverse = rng.integers(0, 50, 5000)
    weights = rng.uniform(0, 1, 5000) * 10.0 ** rng.integers(-8, 8, 5000)  # sums that depend on the order
    got = ordered_sums(xp.asarray(inverse), xp.asarray(weights), 50, xp)
    got = got if xp is np else got.get()
    np.testing.assert_array_equal(got, np.bincount(inverse, weights=weights, minlength=50))


@pytest.mark.parametrize("band_rows", [None, 7])
def test_grid_on_a_stack_of_images_keeps_each_image_apart(rng, band_rows):
    # dbscan_images stacks same-sized images; bands of 7 rows cut images of 10 rows at varying places.
    from skimage import data

    from gpuseg.scale.stack import renumbered, stack_images

    photo = data.astronaut()
    corners = zip(rng.integers(0, 480, 3), rng.integers(0, 480, 3), strict=True)
    images = [photo[y : y + 10, x : x + 12] for y, x in corners]
    stack = stack_images([build_features(image, xy_scale=0.01) for image in images])
    got = run_on_device("grid", stack, 0.0523, 6, band_rows=band_rows).reshape(3, 10, 12)
    for k, image in enumerate(images):
        expected = oracle_dbscan(build_features(image, xy_scale=0.01).matrix(), 0.0523, 6)
        np.testing.assert_array_equal(renumbered(got[k]).ravel(), expected)
