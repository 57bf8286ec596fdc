"""dbscan_images(): a batch of images in one pass, each image's labels as if clustered alone."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import DBSCAN

import gpuseg
from gpuseg.data import shapes_image


def alone(image, eps, min_samples, **options):
    """scikit-learn on the image's own feature rows, as a label map (-1 where alpha masks a pixel out)."""
    X = gpuseg.pixel_features(image, **options)
    labels = DBSCAN(eps=eps, min_samples=min_samples).fit(X).labels_
    if options.get("alpha") == "mask":
        full = np.full(image.shape[:2], -1)
        full[image[:, :, 3] > 0] = labels
        return full
    return labels.reshape(image.shape[:2])


def photos(rng, n, h, w):
    from skimage import data

    photo = data.astronaut()
    return [photo[y : y + h, x : x + w] for y, x in zip(rng.integers(0, 400, n), rng.integers(0, 400, n), strict=True)]


def test_each_image_of_a_batch_is_labelled_as_if_alone(rng):
    images = photos(rng, 4, 18, 21) + [shapes_image(18, 21, seed=5)[0]] + photos(rng, 2, 13, 16)
    eps, min_samples = 0.0523, 8
    got = gpuseg.dbscan_images(images, eps=eps, min_samples=min_samples, xy_scale=0.01, device="cpu")
    assert len(got) == len(images)
    for image, labels in zip(images, got, strict=True):
        np.testing.assert_array_equal(labels, alone(image, eps, min_samples, xy_scale=0.01))


def test_same_sized_images_are_clustered_in_one_run(rng, monkeypatch):
    from gpuseg.scale import stack as cluster

    runs = []
    real = cluster.cluster_features

    def counted(features, **kwargs):
        runs.append((features.shape, features.image_rows, kwargs.get("engine")))
        return real(features, **kwargs)

    monkeypatch.setattr(cluster, "cluster_features", counted)
    images = photos(rng, 5, 12, 10)
    got = gpuseg.dbscan_images(images, eps=0.0523, min_samples=5, device="cpu")
    assert runs == [((60, 10), 12, "grid")]
    for image, labels in zip(images, got, strict=True):
        np.testing.assert_array_equal(labels, alone(image, 0.0523, 5, xy_scale=0.01))


def test_a_batch_with_alpha_masks_and_lab(rng):
    images = []
    for seed in range(3):
        rgb, _ = shapes_image(15, 17, seed=seed)
        image = np.dstack([rgb, np.where(rng.random(rgb.shape[:2]) < 0.2, 0, 255).astype(np.uint8)])
        images.append(image)
    options = dict(color="lab", alpha="mask", xy_scale=0.02)
    got = gpuseg.dbscan_images(images, eps=0.09, min_samples=4, device="cpu", **options)
    for image, labels in zip(images, got, strict=True):
        np.testing.assert_array_equal(labels, alone(image, 0.09, 4, **options))


def test_color_only_batches_run_image_by_image(rng):
    images = photos(rng, 3, 10, 9)
    got = gpuseg.dbscan_images(images, eps=0.03, min_samples=3, xy_scale=0, device="cpu")
    for image, labels in zip(images, got, strict=True):
        np.testing.assert_array_equal(labels, alone(image, 0.03, 3))


def test_a_stack_cannot_go_to_an_engine_that_would_mix_its_images(rng):
    from gpuseg.engines.run import cluster_features
    from gpuseg.features import build_features
    from gpuseg.scale.stack import stack_images

    stack = stack_images([build_features(image, xy_scale=0.01) for image in photos(rng, 2, 6, 6)])
    with pytest.raises(ValueError, match="stack of images runs on engine='grid' only"):
        cluster_features(stack, eps=0.05, min_samples=3, engine="cells", device="cpu")


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([], "non-empty sequence of images"),
        (np.zeros((4, 5, 3), np.uint8), "non-empty sequence of images"),
        ([np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5, 7), np.uint8)], r"images\[1\]: image of shape \(4, 5, 7\)"),
        ([np.zeros((4, 5), np.float64)], r"images\[0\] of shape \(4, 5\) is not an image"),
    ],
)
def test_bad_batches_name_the_image_and_the_fix(images, message):
    with pytest.raises(ValueError, match=message):
        gpuseg.dbscan_images(images, eps=0.05, min_samples=3, device="cpu")
