"""pixel_features against hand computations, cell by cell."""

from __future__ import annotations

import numpy as np
import pytest

from gpuseg.features import pixel_features


def test_rgb_uint8_with_position_by_hand():
    image = np.array([[[0, 51, 255], [255, 0, 102]], [[1, 2, 3], [10, 20, 30]]], dtype=np.uint8)
    X = pixel_features(image, xy_scale=0.5)
    expected = np.array(
        [
            [0 / 255, 51 / 255, 255 / 255, 0.0, 0.0],  # (y=0, x=0)
            [255 / 255, 0 / 255, 102 / 255, 0.5, 0.0],  # (y=0, x=1)
            [1 / 255, 2 / 255, 3 / 255, 0.0, 0.5],  # (y=1, x=0)
            [10 / 255, 20 / 255, 30 / 255, 0.5, 0.5],  # (y=1, x=1)
        ]
    )
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, expected)


def test_uint16_divides_by_65535():
    image = np.array([[[0, 65535, 1000]]], dtype=np.uint16)
    np.testing.assert_array_equal(pixel_features(image), [[0.0, 1.0, 1000 / 65535]])


def test_float_images_are_used_as_they_are():
    image = np.array([[[0.25, -1.0, 3.5]]], dtype=np.float32)
    np.testing.assert_array_equal(pixel_features(image), [[0.25, -1.0, 3.5]])


def test_rgba_alpha_modes():
    image = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]], [[70, 80, 90, 128], [1, 1, 1, 0]]], dtype=np.uint8)
    ignore = pixel_features(image, alpha="ignore")
    np.testing.assert_array_equal(ignore, image[..., :3].reshape(-1, 3) / 255)
    feature = pixel_features(image, alpha="feature")
    np.testing.assert_array_equal(feature, image.reshape(-1, 4) / 255)
    mask = pixel_features(image, alpha="mask", xy_scale=1.0)
    np.testing.assert_array_equal(
        mask, [[40 / 255, 50 / 255, 60 / 255, 1.0, 0.0], [70 / 255, 80 / 255, 90 / 255, 0.0, 1.0]]
    )


def test_grey_image_is_one_column():
    image = np.array([[0, 255], [17, 34]], dtype=np.uint8)
    np.testing.assert_array_equal(pixel_features(image), [[0.0], [1.0], [17 / 255], [34 / 255]])
    np.testing.assert_array_equal(pixel_features(image, color="gray"), pixel_features(image))


def test_gray_from_rgb_uses_luma():
    image = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 100, 100]]], dtype=np.uint8)
    got = pixel_features(image, color="gray")[:, 0] * 255
    np.testing.assert_allclose(got, [0.299 * 255, 0.587 * 255, 0.114 * 255, 100], atol=0.51)


def test_lab_is_cie_lab_over_100():
    from skimage.color import rgb2lab

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    got = pixel_features(image, color="lab")
    expected = rgb2lab(image).reshape(-1, 3) / 100
    np.testing.assert_allclose(got, expected, atol=0.01)  # OpenCV's float32 conversion vs skimage's float64
    white = pixel_features(np.full((1, 1, 3), 255, np.uint8), color="lab")
    np.testing.assert_allclose(white, [[1.0, 0.0, 0.0]], atol=1e-4)


def test_points_are_passed_through():
    X = np.array([[1.5, -2.0], [0.0, 3.0]], dtype=np.float32)
    got = pixel_features(X)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, X)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"color": "hsv"}, "color='hsv' is not one of rgb, lab, gray"),
        ({"alpha": "keep"}, "alpha='keep' is not one of ignore, feature, mask"),
        ({"xy_scale": -0.01}, r"xy_scale=-0.01 must be 0 \(colour only\) or a positive finite number"),
        ({"xy_scale": float("nan")}, r"xy_scale=nan must be 0 \(colour only\) or a positive"),
        ({"xy_scale": float("-inf")}, r"xy_scale=-inf must be 0 \(colour only\) or a positive"),
        ({"xy_scale": float("inf")}, r"xy_scale=inf must be 0 \(colour only\) or a positive"),
        ({"xy_scale": "0.01"}, r"xy_scale='0.01' must be 0 \(colour only\) or a positive .* \(not a str\)"),
    ],
)
def test_bad_options_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pixel_features(np.zeros((2, 2, 3), np.uint8), **kwargs)


def test_xy_scale_zero_means_color_only_as_on_the_command_line():
    image = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    for color_only in (0, 0.0, None):
        X = pixel_features(image, xy_scale=color_only)
        np.testing.assert_array_equal(X, image.reshape(-1, 3) / 255.0)


def test_lab_alpha_feature_column_is_scaled_like_the_colors():
    image = np.zeros((2, 3, 4), np.uint8)
    image[..., 3] = [[0, 51, 255], [102, 204, 255]]
    X = pixel_features(image, color="lab", alpha="feature")
    np.testing.assert_allclose(X[:, 3], [0, 0.2, 1, 0.4, 0.8, 1])
    image16 = image.astype(np.uint16) * 257
    np.testing.assert_allclose(pixel_features(image16, color="lab", alpha="feature")[:, 3], X[:, 3])


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((2, 2, 2), np.uint8), "is not an"),
        (np.zeros((0, 3, 3), np.uint8), "is not an"),
        (np.zeros((2, 2, 3), np.int32), "dtype int32 is not supported"),
        (np.full((2, 2, 3), np.nan, np.float32), "NaN or infinite"),
        (np.array([[1.0, np.inf]]), "NaN or infinite"),
    ],
)
def test_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        pixel_features(image)
