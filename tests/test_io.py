"""load_image: every format, depth and channel count OpenCV reads, and every bad input."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from gpuseg.errors import ImageError, OutputExistsError
from gpuseg.io import atomic_write, decode_image, load_image, save_png

LOSSLESS = [
    (".png", np.uint8, 1),
    (".png", np.uint8, 3),
    (".png", np.uint8, 4),
    (".png", np.uint16, 1),
    (".png", np.uint16, 3),
    (".png", np.uint16, 4),
    (".tiff", np.uint8, 3),
    (".tiff", np.uint16, 3),
    (".tiff", np.uint8, 4),
    (".tiff", np.uint16, 1),
    (".bmp", np.uint8, 1),
    (".bmp", np.uint8, 3),
    (".bmp", np.uint8, 4),
]


def random_image(rng, dtype, channels, h=17, w=23):
    top = np.iinfo(dtype).max
    shape = (h, w) if channels == 1 else (h, w, channels)
    image = rng.integers(0, top + 1, shape, dtype=np.int64).astype(dtype)
    if channels == 4:
        image[..., 3] = np.maximum(image[..., 3], 1)  # formats may drop fully transparent colour
    return image


def write_rgb(path, image, params=()):
    bgr = (
        image
        if image.ndim == 2
        else cv2.cvtColor(image, {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}[image.shape[2]])
    )
    assert cv2.imwrite(str(path), bgr, list(params))


@pytest.mark.parametrize(("suffix", "dtype", "channels"), LOSSLESS)
def test_lossless_formats_round_trip(tmp_path, rng, suffix, dtype, channels):
    image = random_image(rng, dtype, channels)
    path = tmp_path / f"img{suffix}"
    write_rgb(path, image)
    got = load_image(path)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, image)


@pytest.mark.parametrize("channels", [3, 4])
def test_webp_lossless(tmp_path, rng, channels):
    image = random_image(rng, np.uint8, channels)
    if channels == 4:
        image[..., 3] = 255
    path = tmp_path / "img.webp"
    write_rgb(path, image, (cv2.IMWRITE_WEBP_QUALITY, 101))
    got = load_image(path)
    np.testing.assert_array_equal(got[..., :3], image[..., :3])


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_is_read_in_rgb_order(tmp_path, channels):
    image = np.zeros((16, 32, 3), np.uint8)
    image[:, :16] = (220, 20, 20)  # red left
    image[:, 16:] = (20, 20, 220)  # blue right
    if channels == 1:
        image = image[..., 0]
    write_rgb(tmp_path / "a.jpg", image, (cv2.IMWRITE_JPEG_QUALITY, 95))
    got = load_image(tmp_path / "a.jpg")
    assert got.shape == image.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - image).mean() < 6


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_jpeg_exif_orientation_is_applied(tmp_path):
    image = np.zeros((16, 32, 3), np.uint8)
    image[:, :16] = (220, 20, 20)
    image[:, 16:] = (20, 20, 220)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    path = tmp_path / "rotated.jpg"
    path.write_bytes(with_exif_orientation(buf.tobytes(), 6))  # 6: rotate 90 degrees clockwise to display
    got = load_image(path)
    assert got.shape == (32, 16, 3)
    expected = np.rot90(image, k=-1)  # the left (red) half becomes the top
    assert np.abs(got.astype(int) - expected).mean() < 6


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_directory(tmp_path):
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.png")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("these are not pixels\n" * 20)
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "notes.png")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file(tmp_path, rng, suffix):
    path = tmp_path / f"full{suffix}"
    write_rgb(path, random_image(rng, np.uint8, 3, 64, 64))
    data = path.read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(tmp_path / f"cut{suffix}")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_pixel_cap(tmp_path, rng, suffix):
    path = tmp_path / f"big{suffix}"
    write_rgb(path, random_image(rng, np.uint8, 3, 40, 50))
    with pytest.raises(ImageError, match="2,000 pixels is more than the limit of 1,999"):
        load_image(path, max_pixels=1999)
    assert load_image(path, max_pixels=2000).shape == (40, 50, 3)


def test_decode_from_bytes_matches_file(tmp_path, rng):
    image = random_image(rng, np.uint8, 4)
    save_png(tmp_path / "x.png", image)
    np.testing.assert_array_equal(decode_image((tmp_path / "x.png").read_bytes()), image)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"

    def fail_halfway(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fail_halfway)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_refuses_to_overwrite(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match="overwrite"):
        atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"keep"
    atomic_write(target, lambda f: f.write(b"new"), overwrite=True)
    assert target.read_bytes() == b"new"
