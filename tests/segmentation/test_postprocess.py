"""Segmentations people can use: noise filled, small regions merged, eps for a target noise, the warnings."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from scipy.spatial import cKDTree
from typer.testing import CliRunner

import gpuseg
from gpuseg.cli.app import app
from gpuseg.data import shapes_image
from gpuseg.segmentation.postprocess import fill_noise, merge_small_regions, postprocess

runner = CliRunner()


def photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


def test_fill_by_hand():
    labels = np.array([[0, -1, -1, -1, 1], [-1, -1, -1, -1, -1]])
    filled, n = fill_noise(labels)
    assert n == 8
    assert filled[0].tolist()[:2] == [0, 0] and filled[0].tolist()[3:] == [1, 1]
    assert filled[1].tolist()[:2] == [0, 0] and filled[1].tolist()[3:] == [1, 1]
    assert filled[0, 2] in (0, 1) and filled[1, 2] in (0, 1)  # equidistant from both clusters


def test_fill_leaves_non_samples_alone_and_never_copies_them():
    labels = np.array([[2, -1, -1, -1, -1]])
    samples = np.array([[True, False, True, False, True]])
    filled, n = fill_noise(labels, samples)
    assert n == 2 and filled.tolist() == [[2, -1, 2, -1, 2]]
    nothing, n = fill_noise(np.full((2, 3), -1))
    assert n == 0 and (nothing == -1).all()


@pytest.mark.parametrize("name", ["coffee", "astronaut"])
def test_fill_on_photos_leaves_no_noise_and_changes_no_clustered_pixel(name):
    image = photo(name)
    kept = gpuseg.segment(image)
    filled = gpuseg.segment(image, noise="fill")
    dbscan = kept.labels
    assert (filled.dbscan_labels == dbscan).all()
    assert kept.report["noise_fraction"] > 0.05 and not (filled.labels < 0).any()
    assert (filled.labels[dbscan >= 0] == dbscan[dbscan >= 0]).all()
    post = filled.report["postprocess"]
    assert post["filled"] == int((dbscan < 0).sum()) and post["noise_fraction"] == 0.0
    assert filled.report["noise_fraction"] == kept.report["noise_fraction"]  # the report keeps DBSCAN's figures
    # each filled pixel took the cluster of a clustered pixel at the smallest distance (checked by a k-d tree)
    clustered = np.argwhere(dbscan >= 0)
    tree = cKDTree(clustered)
    noise = np.argwhere(dbscan < 0)[:: max(1, int((dbscan < 0).sum()) // 500)]
    distance, _ = tree.query(noise)
    for pixel, d in zip(noise, distance, strict=True):
        nearest = clustered[tree.query_ball_point(pixel, d + 1e-9)]
        assert filled.labels[tuple(pixel)] in set(dbscan[nearest[:, 0], nearest[:, 1]])


def test_merge_by_hand_joins_the_longest_border():
    labels = np.array(
        [
            [0, 0, 0, 1, 1, 1],
            [0, 0, 0, 1, 1, 1],
            [0, 2, 2, 1, 1, 1],
        ]
    )  # region 2 shares 3 edges with cluster 0, 1 with cluster 1
    merged, n = merge_small_regions(labels, 3)
    assert n == 1 and merged.tolist() == [[0, 0, 0, 1, 1, 1]] * 3
    labels = np.array([[0, 0, 0, 0], [1, 3, 3, 1], [1, 1, 1, 1]])  # cluster 3: 2 edges with 0, 4 with 1
    merged, n = merge_small_regions(labels, 3)
    assert n == 1 and merged.tolist() == [[0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]


def test_merge_keeps_noise_regions_apart_and_renumbers_in_order():
    labels = np.array(
        [
            [0, 0, 0, -1, 1],
            [0, 0, 0, -1, -1],
            [2, 2, 3, 3, 3],
        ]
    )
    merged, n = merge_small_regions(labels, 3)
    # cluster 1 touches only noise: kept; cluster 2 (2 px) joins 0 (2 edges) rather than 3 (1 edge)
    assert n == 1
    assert merged.tolist() == [[0, 0, 0, -1, 1], [0, 0, 0, -1, -1], [0, 0, 2, 2, 2]]
    # one cluster in two regions: only its small region joins a neighbour
    split = np.array([[0, 0, 0, 1, 0], [0, 0, 0, 1, 1]])
    assert merge_small_regions(split, 2)[0].tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1]]


def test_merge_properties_on_random_labels(rng):
    seed = int(rng.integers(2**31))
    local = np.random.default_rng(seed)
    labels = cv2.resize(local.integers(-1, 6, (12, 15)), (60, 48), interpolation=cv2.INTER_NEAREST)
    labels[local.random(labels.shape) < 0.05] = local.integers(-1, 6)
    merged, _ = merge_small_regions(labels, 20)
    assert ((merged < 0) == (labels < 0)).all(), seed
    from scipy import ndimage

    def regions(lab):
        for value in np.unique(lab[lab >= 0]):
            comp, n = ndimage.label(lab == value)
            for k in range(1, n + 1):
                yield value, comp == k

    renamed = {}  # large regions keep their cluster, renumbered in the same order
    for value, region in regions(labels):
        if region.sum() >= 20:
            kept = np.unique(merged[region])
            assert kept.size == 1 and renamed.setdefault(value, kept[0]) == kept[0], seed
    assert sorted(renamed.values()) == [renamed[v] for v in sorted(renamed)], seed
    for _, region in regions(merged):  # a region still small touches no other region
        if region.sum() < 20:
            ring = ndimage.binary_dilation(region, structure=ndimage.generate_binary_structure(2, 1)) & ~region
            assert (merged[ring] < 0).all(), seed
    present = np.unique(merged[merged >= 0])
    assert present.tolist() == list(range(present.size)), seed


def test_postprocess_on_a_photo_with_min_region():
    result = gpuseg.segment(photo("coffee"), noise="fill", min_region=200)
    post = result.report["postprocess"]
    assert post["merged_regions"] > 0 and post["n_clusters"] < result.report["n_clusters"]
    assert (result.labels >= 0).all() and post["cluster_sizes"] == np.bincount(result.labels.ravel()).tolist()
    again = postprocess(result.dbscan_labels, noise="fill", min_region=200)
    assert (again.labels == result.labels).all()


@pytest.mark.slow  # eps searches on photos
@pytest.mark.parametrize(
    ("name", "options", "target"),
    [
        ("coffee", {}, 0.1),
        ("astronaut", {}, 0.25),
        ("coffee", {"xy_scale": None}, 0.3),
        ("chelsea", {"color": "rgb"}, 0.05),
    ],
)
def test_auto_eps_lands_near_the_target_noise(name, options, target):
    image = photo(name)
    result = gpuseg.segment(image, eps="auto", target_noise=target, **options)
    report = result.report
    assert abs(report["noise_fraction"] - target) <= 0.03
    search = report["eps_search"]
    assert search["eps"] == report["eps"] and 1 <= len(search["runs"]) <= 10
    assert search["runs"][-1]["eps"] > 0 and {"eps", "noise_fraction"} == set(search["runs"][0])
    again = gpuseg.segment(image, eps=report["eps"], **options)  # the chosen eps, run as a plain eps
    assert (again.labels == result.labels).all()
    assert report["timings_s"]["eps_search"] > 0
    assert not any(w.startswith("eps='auto'") for w in report["warnings"])  # the target was met


def test_auto_eps_parameter_errors():
    image = shapes_image(40, 50, seed=0)[0]
    with pytest.raises(ValueError, match=r"target_noise=0\.2 chooses eps"):
        gpuseg.segment(image, target_noise=0.2)
    with pytest.raises(ValueError, match=r"target_noise=1\.5 must be a fraction in \[0, 1\)"):
        gpuseg.segment(image, eps="auto", target_noise=1.5)
    with pytest.raises(ValueError, match=r"eps='big' must be a positive finite number"):
        gpuseg.segment(image, eps="big")
    with pytest.raises(ValueError, match=r"noise='drop' is not one of keep, fill"):
        gpuseg.segment(image, noise="drop")
    with pytest.raises(ValueError, match=r"min_region=-3 must be an integer >= 0"):
        gpuseg.segment(image, min_region=-3)


def test_one_giant_cluster_is_warned_about():
    colour_only = gpuseg.segment(photo("coffee"), xy_scale=None)
    (warning,) = colour_only.report["warnings"]
    assert "one cluster holds" in warning and "lower eps" in warning and "add position" in warning
    assert gpuseg.segment(shapes_image(120, 160, seed=3)[0]).report["warnings"] == []


@pytest.mark.slow  # eps searches on photos
def test_suggest_reports_the_target_eps_beside_the_knee():
    image = photo("coffee")
    s = gpuseg.suggest_eps(image, target_noise=0.1)
    assert s.recommended in ("knee", "target") and s.eps == (s.knee_eps if s.recommended == "knee" else s.target_eps)
    assert abs(s.target_noise_fraction - 0.1) <= 0.03 and s.search_runs >= 1
    check = gpuseg.segment(image, eps=s.knee_eps)
    assert check.report["noise_fraction"] == s.knee_noise
    colour = gpuseg.suggest_eps(image, xy_scale=None, target_noise=0.1)
    assert colour.knee_largest_cluster > 0.9  # the knee chains the photo into one cluster ...
    assert colour.recommended == "target" and colour.target_largest_cluster <= 0.9  # ... the suggestion does not
    sizes = gpuseg.segment(image, eps=colour.eps, xy_scale=None).report["cluster_sizes"]
    assert max(sizes) / image[..., 0].size <= 0.9


def test_suggest_warns_when_the_curve_is_capped(rng):
    noise_image = rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)  # no pixel has 20 near colours close by
    s = gpuseg.suggest_eps(noise_image, min_samples=20)
    assert s.capped_fraction > 0.5 and "capped" in s.warnings[0]


@pytest.fixture
def coffee_png(tmp_path):
    path = tmp_path / "coffee.png"
    cv2.imwrite(str(path), cv2.cvtColor(photo("coffee"), cv2.COLOR_RGB2BGR))
    return path


def test_cli_auto_eps_fill_and_min_region(coffee_png, tmp_path):
    out = tmp_path / "out"
    args = ["segment", str(coffee_png), "--eps", "auto", "--target-noise", "0.15", "--noise", "fill"]
    result = runner.invoke(app, [*args, "--min-region", "50", "--out-dir", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    report = json.loads((out / "coffee.json").read_text())
    assert abs(report["noise_fraction"] - 0.15) <= 0.03 and report["postprocess"]["min_region"] == 50
    png = cv2.imread(str(out / "coffee.labels.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.min() >= 1  # 0 would be noise
    assert (np.load(out / "coffee.labels.npy") == png.astype(np.int64) - 1).all()
    assert "regions under 50 px merged" in result.output and "eps for 15% noise" in result.output


def test_cli_prints_the_giant_cluster_warning(coffee_png, tmp_path):
    result = runner.invoke(
        app, ["segment", str(coffee_png), "--xy-scale", "0", "--out-dir", str(tmp_path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0 and "warning" in result.output and "one cluster holds" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target-noise", "0.2"], "chooses eps: use it with --eps auto"),
        (["--eps", "auto", "--target-noise", "1.5"], "must be a fraction in [0, 1)"),
        (["--eps", "abc"], "such as 0.055, or auto"),
        (["--noise", "drop"], "'drop' is not one of"),
        (["--min-region", "-1"], "must be an integer >= 0"),
    ],
)
def test_cli_usage_errors(coffee_png, args, message):
    result = runner.invoke(app, ["segment", str(coffee_png), *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not list(coffee_png.parent.glob("coffee.*.npy"))


def test_cli_suggest_prints_both_and_the_recommendation(coffee_png, tmp_path):
    result = runner.invoke(app, ["suggest", str(coffee_png), "--xy-scale", "0", "--plot", str(tmp_path / "k.png")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "knee of the 20-distance curve" in text and "for 10% noise" in text and "recommended" in text
    assert "--eps" in text.split("run:")[1]


def test_auto_eps_says_when_it_misses_the_target():
    image = shapes_image(60, 80, seed=1, noise=0.0)[0]  # flat shapes: the noise jumps from 94% to 29% at once
    report = gpuseg.segment(image, eps="auto", target_noise=0.5, min_samples=5, color="rgb").report
    assert abs(report["noise_fraction"] - 0.5) > 0.03
    assert any(w.startswith("eps='auto' ended at 28.6% noise, not target_noise=0.5") for w in report["warnings"])
