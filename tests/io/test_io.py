"""load_image: every format, depth and channel count OpenCV reads, and every bad input."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import gpuseg.io.read
from gpuseg.errors import ImageError, OutputExistsError
from gpuseg.io.read import decode_image, load_image
from gpuseg.io.write import atomic_write, save_png

ROOT = Path(__file__).resolve().parents[2]

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


CAP_FORMATS = [".png", ".jpg", ".tiff", ".bmp", ".webp", ".ppm", ".pgm", ".pam", ".pfm", ".hdr", ".ras", ".gif",
               ".jp2", ".avif"]  # fmt: skip


@pytest.mark.parametrize("suffix", CAP_FORMATS)
def test_pixel_cap_is_checked_before_decoding(tmp_path, rng, monkeypatch, suffix):
    image = random_image(rng, np.uint8, 1 if suffix == ".pgm" else 3, 40, 50)
    if suffix == ".pfm":
        image = image.astype(np.float32)
    path = tmp_path / f"big{suffix}"
    write_rgb(path, image)
    decode = cv2.imdecode

    def no_decoding(*args, **kwargs):
        raise AssertionError("the decoder was called")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    with pytest.raises(ImageError, match="2,000 pixels is more than the limit of 1,999"):
        load_image(path, max_pixels=1999)
    with pytest.raises(ImageError, match="2,000 pixels is more than the limit of 1,999"):
        decode_image(path.read_bytes(), max_pixels=1999)
    monkeypatch.setattr(cv2, "imdecode", decode)
    assert load_image(path, max_pixels=2000).shape[:2] == (40, 50)


def test_max_pixels_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="max_pixels=0 must be an integer >= 1"):
        load_image(tmp_path / "any.png", max_pixels=0)


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter with this checkout's gpuseg: a hang fails the test instead of the run."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "stream.png"
    os.mkfifo(fifo)
    code = f"""
from gpuseg.io.read import load_image, read_header
from gpuseg.errors import ImageError
for read in (load_image, read_header):
    try:
        read({str(fifo)!r})
    except ImageError as exc:
        print(exc)
"""
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("stream.png: is a FIFO (named pipe), not an image file") == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_swapped_in_after_the_check_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "swapped.png"
    os.mkfifo(fifo)
    regular = tmp_path / "regular.png"
    regular.write_bytes(b"x")
    code = f"""
import os
from gpuseg.io.read import load_image
from gpuseg.errors import ImageError
real_stat = os.stat
os.stat = lambda path, *a, **k: real_stat({str(regular)!r}) if str(path) == {str(fifo)!r} else real_stat(path, *a, **k)
try:
    load_image({str(fifo)!r})
except ImageError as exc:
    print(exc)
"""
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert "swapped.png: is a FIFO (named pipe)" in out.stdout


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_character_device_is_refused_at_once():
    with pytest.raises(ImageError, match="/dev/zero: is a character device, not an image file"):
        load_image("/dev/zero")


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets here")
def test_socket_is_refused(tmp_path):
    with socket.socket(socket.AF_UNIX) as server:
        try:
            server.bind(str(tmp_path / "s.png"))
        except OSError:
            pytest.skip("cannot bind a Unix socket here")
        with pytest.raises(ImageError, match="s.png: is a socket"):
            load_image(tmp_path / "s.png")


def test_file_larger_than_any_image_of_max_pixels_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    with open(path, "wb") as f:  # sparse: takes no disk space
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(2**36)

    def no_reading(self):
        raise AssertionError("the whole file was read")

    monkeypatch.setattr(gpuseg.io.read.RegularFile, "read_all", no_reading)
    with pytest.raises(ImageError, match=r"huge.png: 68,719,476,736 bytes is more than any image of at most"):
        load_image(path)


def test_unreadable_file_names_the_path(tmp_path):
    path = tmp_path / "locked.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running with permissions that ignore file modes")
        with pytest.raises(ImageError, match="locked.png: cannot be read \\(Permission denied\\)"):
            load_image(path)
    finally:
        path.chmod(0o600)


def test_path_through_a_file_names_the_path(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ImageError, match="file/image.png: cannot be read \\(Not a directory\\)"):
        load_image(tmp_path / "file" / "image.png")


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
