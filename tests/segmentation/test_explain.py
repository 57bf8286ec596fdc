"""Choosing eps (suggest), the pictures, the explain panel and the quality figures."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import gpuseg
from gpuseg.cli.app import app
from gpuseg.data import shapes_image
from gpuseg.io.write import save_png
from gpuseg.segmentation.pictures import boundary_mask, mean_color, noise_map
from gpuseg.segmentation.quality import quality
from gpuseg.tuning.kdist import knee_index

runner = CliRunner()


@pytest.mark.parametrize(("color", "xy_scale"), [("lab", 0.01), ("rgb", 0.01), ("rgb", None)])
def test_suggested_eps_recovers_known_regions(color, xy_scale, rng):
    seed = int(rng.integers(2**31))
    image, truth = shapes_image(160, 200, seed=seed)
    s = gpuseg.suggest_eps(image, min_samples=20, color=color, xy_scale=xy_scale)
    result = gpuseg.segment(image, eps=s.eps, min_samples=20, color=color, xy_scale=xy_scale, truth=truth)
    assert result.report["quality"]["adjusted_rand_index"] >= 0.9, (seed, s.eps)
    if xy_scale:
        assert s.radius_px == math.floor(s.eps / xy_scale)


def test_suggestion_is_reproducible_and_samples_big_images():
    image = np.tile(shapes_image(120, 160, seed=1)[0], (4, 4, 1))  # 307,200 pixels > the sample size
    a = gpuseg.suggest_eps(image, min_samples=20, color="rgb", xy_scale=None)
    b = gpuseg.suggest_eps(image, min_samples=20, color="rgb", xy_scale=None)
    assert a.eps == b.eps and a.sample_size == 200_000 and len(a.k_distances) == 5_000
    assert a.neighbours_in_sample == round(20 * 200_000 / image[..., 0].size)
    c = gpuseg.suggest_eps(image, min_samples=20, xy_scale=0.01)
    assert c.sample_size == image[..., 0].size and c.neighbours_in_sample == 20


def test_grid_k_distances_match_a_brute_force_search(rng):
    from sklearn.neighbors import NearestNeighbors

    from gpuseg.features import build_features
    from gpuseg.tuning.kdist import WINDOW_RADIUS, grid_k_distances

    image, _ = shapes_image(40, 50, seed=int(rng.integers(1000)))
    features = build_features(image, color="rgb", xy_scale=0.02)  # k-distances well inside the window
    X = features.matrix()
    queries = np.sort(rng.choice(X.shape[0], 300, replace=False))
    expected = np.sort(NearestNeighbors(n_neighbors=9).fit(X).kneighbors(X[queries])[0][:, -1])
    reach = (WINDOW_RADIUS + 1) * 0.02  # beyond the window's reach the documented cap applies
    np.testing.assert_allclose(grid_k_distances(features, queries, 9), np.minimum(expected, reach), rtol=1e-12)


def test_knee_of_a_hand_made_curve():
    curve = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 5.0, 9.0])
    assert knee_index(curve) == 4
    assert knee_index(np.array([2.0, 2.0, 2.0])) == 2


def test_quality_by_hand():
    truth = np.array([[0, 0], [1, 1]])
    assert quality(truth, truth) == {"adjusted_rand_index": 1.0, "variation_of_information": 0.0}
    renamed = quality(np.array([[5, 5], [-1, -1]]), truth)
    assert renamed["adjusted_rand_index"] == 1.0 and renamed["variation_of_information"] == pytest.approx(0.0)
    one = quality(np.zeros((2, 2), int), truth)  # H(truth) = ln 2, H(one) = 0, I = 0
    assert one["variation_of_information"] == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="pixels"):
        quality(np.zeros(3), np.zeros(4))


def test_pictures_by_hand():
    image = np.array([[[10, 20, 30], [30, 40, 50], [0, 0, 0]]], dtype=np.uint8)
    labels = np.array([[0, 0, -1]])
    mean = mean_color(image, labels)
    assert mean[0, 0].tolist() == [20, 30, 40] and mean[0, 1].tolist() == [20, 30, 40]
    assert mean[0, 2].tolist() == [255, 0, 255]
    assert boundary_mask(labels).tolist() == [[False, True, False]]
    noise = noise_map(image, labels)
    assert noise[0, 2].tolist() == [255, 0, 255] and noise[0, 0].tolist() != [255, 0, 255]


def test_cli_suggest_prints_the_command_and_writes_the_plot(tmp_path):
    path = tmp_path / "scene.png"
    save_png(path, shapes_image(80, 100, seed=3)[0])
    result = runner.invoke(app, ["suggest", str(path), "--min-samples", "15", "--plot", str(tmp_path / "k.png")])
    assert result.exit_code == 0, result.output
    assert "recommended: eps" in result.output and "pixels apart" in result.output
    assert f"gpuseg segment {path} --eps" in result.output
    assert cv2.imread(str(tmp_path / "k.png")) is not None


def test_cli_pictures_explain_and_truth(tmp_path):
    image, truth = shapes_image(60, 80, seed=4)
    path, truth_path = tmp_path / "scene.png", tmp_path / "truth.png"
    save_png(path, image)
    save_png(truth_path, truth.astype(np.uint16))
    out = tmp_path / "out"
    args = ["segment", str(path), "--eps", "0.0523", "--min-samples", "10", "--out-dir", str(out)]
    result = runner.invoke(
        app, [*args, "--save", "overlay,mean,boundaries,noise", "--explain", "--truth", str(truth_path)]
    )
    assert result.exit_code == 0, result.output
    for name in ("overlay", "mean", "boundaries", "noise"):
        assert cv2.imread(str(out / f"scene.{name}.jpg")).shape == (60, 80, 3)
    panel = cv2.imread(str(out / "scene.explain.jpg"))
    assert panel.shape[1] == 2 * 420 and panel.shape[0] > 2 * 60
    report = json.loads((out / "scene.json").read_text())
    assert 0.0 <= report["quality"]["adjusted_rand_index"] <= 1.0
    assert report["quality"]["variation_of_information"] >= 0.0
    bad = runner.invoke(app, [*args, "--save", "sepia", "--overwrite"])
    assert bad.exit_code == 2 and "sepia" in bad.output
