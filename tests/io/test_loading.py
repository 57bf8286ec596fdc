"""Reading inputs: sizes from every format's header before decoding, special files, damaged and trailing data,
and points files checked before they are loaded."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import png_claiming
from typer.testing import CliRunner

from gpuseg.cli.app import app
from gpuseg.errors import GpusegError, ImageError
from gpuseg.io.points import read_points
from gpuseg.io.read import decode_image, load_image, read_header

runner = CliRunner()


def encoded(ext: str, image: np.ndarray) -> bytes:
    params = [cv2.IMWRITE_PAM_TUPLETYPE, cv2.IMWRITE_PAM_FORMAT_RGB_ALPHA] if ext == ".pam" else []
    ok, buf = cv2.imencode(ext, image, params)
    assert ok
    return buf.tobytes()


def photo(h=40, w=50, channels=3, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max if dtype != np.float32 else 1
    shape = (h, w) if channels == 1 else (h, w, channels)
    return (rng.random(shape) * top).astype(dtype)


CASES = [
    (".png", 3, np.uint8),
    (".png", 4, np.uint16),
    (".png", 1, np.uint16),
    (".jpg", 3, np.uint8),
    (".jpg", 1, np.uint8),
    (".tif", 3, np.uint16),
    (".tif", 4, np.uint8),
    (".tif", 1, np.float32),
    (".bmp", 3, np.uint8),
    (".bmp", 4, np.uint8),
    (".webp", 3, np.uint8),
    (".webp", 4, np.uint8),
    (".ppm", 3, np.uint16),
    (".pgm", 1, np.uint8),
    (".pfm", 3, np.float32),
    (".pam", 4, np.uint8),
]


@pytest.mark.parametrize(("ext", "channels", "dtype"), CASES, ids=[f"{e}-{c}-{d.__name__}" for e, c, d in CASES])
def test_header_agrees_with_the_decoded_image(ext, channels, dtype):
    data = encoded(ext, photo(37, 53, channels, dtype))
    header = read_header(data)
    image = decode_image(data)
    assert (header.height, header.width) == image.shape[:2] == (37, 53)
    assert header.itemsize == image.dtype.itemsize
    decoded_channels = 1 if image.ndim == 2 else image.shape[2]
    assert decoded_channels <= header.channels


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("bigtiff", [False, True])
def test_tiff_headers_of_both_orders_and_bigtiff(tmp_path, byteorder, bigtiff):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, photo(23, 31, 3), byteorder=byteorder, bigtiff=bigtiff, photometric="rgb")
    header = read_header(path.read_bytes())
    assert (header.format, header.height, header.width, header.channels, header.itemsize) == ("tiff", 23, 31, 3, 1)
    assert load_image(path).shape == (23, 31, 3)


def huge_tiff(width=30000, height=30000) -> bytes:
    """A small valid TIFF whose header is patched to claim ``width`` x ``height`` pixels."""
    data = bytearray(encoded(".tif", photo(8, 8)))
    assert data[:4] == b"II*\x00"
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        at = ifd + 2 + 12 * i
        tag, kind = struct.unpack("<HH", data[at : at + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            data[at + 2 : at + 4] = struct.pack("<H", 4)  # as a LONG
            data[at + 8 : at + 12] = struct.pack("<I", value)
    return bytes(data)


def test_huge_tiff_is_refused_from_its_header_without_decoding(tmp_path, monkeypatch):
    path = tmp_path / "huge.tif"
    path.write_bytes(huge_tiff())

    def never(*args, **kwargs):
        raise AssertionError("the decoder was called")

    monkeypatch.setattr(cv2, "imdecode", never)
    with pytest.raises(ImageError, match=r"30000x30000 = 900,000,000 pixels is more than the limit"):
        load_image(path)
    with pytest.raises(ImageError, match="more than the limit"):
        decode_image(path.read_bytes())


def test_unknown_format_is_refused_with_the_list(tmp_path):
    path = tmp_path / "x.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    with pytest.raises(ImageError, match="not an image gpuseg reads .*PNG, JPEG, TIFF"):
        load_image(path)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    code = (
        "from gpuseg.io.read import load_image\n"
        f"try:\n    load_image({str(fifo)!r})\nexcept Exception as e:\n    print(e)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "is a FIFO (named pipe), not an image file" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this system")
def test_a_device_is_refused_at_once():
    with pytest.raises(ImageError, match="is a character device"):
        load_image("/dev/zero")
    result = runner.invoke(app, ["segment", "/dev/zero", "--out-dir", "/tmp/never-written"])
    assert result.exit_code == 1 and "character device" in result.output


def test_a_file_too_large_for_the_pixel_cap_is_refused_before_reading(tmp_path):
    path = tmp_path / "padded.png"
    with open(path, "wb") as f:
        f.write(encoded(".png", photo(4, 4)))
        f.truncate(80 * 2**20)  # sparse: costs no disk
    with pytest.raises(ImageError, match="more than any image of at most 1,000 pixels takes"):
        load_image(path, max_pixels=1000)


def test_jpeg_with_trailing_data_is_accepted():
    image = photo(32, 48)
    data = encoded(".jpg", image)
    motion = data + b"\x00\x00\x00\x18ftypmp42" + bytes(5000)
    np.testing.assert_array_equal(decode_image(motion), decode_image(data))


def test_truncated_jpeg_is_refused_with_or_without_its_end_marker():
    data = encoded(".jpg", photo(64, 64))
    with pytest.raises(ImageError, match="truncated"):
        decode_image(data[: len(data) // 2])
    with pytest.raises(ImageError, match="the JPEG image data stops .* before the image is complete"):
        decode_image(data[: len(data) // 2] + b"\xff\xd9")


def test_png_trailing_data_is_accepted_and_a_cut_png_refused():
    data = encoded(".png", photo(30, 30))
    np.testing.assert_array_equal(decode_image(data + b"trailing bytes"), decode_image(data))
    iend = data[-12:]
    with pytest.raises(ImageError, match="PNG file is (truncated|damaged)"):
        decode_image(data[: len(data) // 2] + iend)


# ------------------------------------------------------------------------------------------------- points


def test_npy_header_claiming_a_huge_shape_is_refused(tmp_path):
    path = tmp_path / "lie.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 3)})
        f.write(bytes(64))
    with pytest.raises(GpusegError, match=r"shape \(1000000000000, 3\).*truncated or damaged"):
        read_points(path)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 4, 2)), r"shape \(3, 4, 2\); gpuseg clusters an \(N, F\) table"),
        (np.array(["a", "b"]).reshape(2, 1), "holds <U1 values"),
        (np.zeros((0, 3)), r"shape \(0, 3\)"),
    ],
)
def test_npy_that_is_not_a_table_of_numbers(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(GpusegError, match=message):
        read_points(tmp_path / "x.npy")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x,y\n1,2\n3,4\n5,oops\n", "line 4, column 2: 'oops' is not a number"),
        ("1,2\n\n3,4,5\n", "line 3 has 3 columns where line 1 has 2"),
        ("x,y\n1,2\nnan,4\n", "line 3, column 1: nan is not a finite number"),
        ("x,y\n", "has a header line and no data rows"),
        ("", "the file is empty"),
    ],
)
def test_csv_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(GpusegError, match=message):
        read_points(path)
    result = runner.invoke(app, ["cluster", str(path), "--eps", "1", "--min-samples", "2"])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_csv_with_a_header_reads_its_rows(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("x,y\n1,2\n3.5,-4e-3\n")
    np.testing.assert_array_equal(read_points(path), [[1, 2], [3.5, -4e-3]])


def test_signal_module_is_left_alone_by_loading(tmp_path):
    handler = signal.getsignal(signal.SIGTERM)
    load_image_path = tmp_path / "x.png"
    load_image_path.write_bytes(encoded(".png", photo(5, 5)))
    load_image(load_image_path)
    assert signal.getsignal(signal.SIGTERM) is handler


# ------------------------------------------------------------------------------------------------- memory


def test_a_run_that_would_not_fit_in_memory_is_refused_up_front(tmp_path, monkeypatch):
    import gpuseg
    import gpuseg._core.memory

    path = tmp_path / "big.png"
    path.write_bytes(png_claiming(8000, 8000))
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("the decoder was called"))
    monkeypatch.setattr(gpuseg._core.memory, "available_memory", lambda: 2**30)
    with pytest.raises(gpuseg.errors.MemoryLimitError, match=r"64,000,000 pixels \(lab \+ position\) needs about"):
        gpuseg.segment(path)
    with pytest.raises(gpuseg.errors.MemoryLimitError, match=r"is the limit set.*max_memory="):
        gpuseg.segment(path, max_memory=10**8)
    result = runner.invoke(app, ["segment", str(path), "--out-dir", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "1.0 GiB is available" in result.output and "--max-memory" in result.output
    assert "max_memory" not in result.output and not (tmp_path / "o").exists()


def test_the_prediction_grows_with_what_the_run_does():
    from gpuseg._core.memory import predicted_memory

    base = dict(channels=3, itemsize=1, color="rgb", position=True)
    one = predicted_memory(10**6, **base)
    assert predicted_memory(2 * 10**6, **base) == 2 * one
    assert predicted_memory(10**6, **{**base, "color": "lab"}) > one
    assert predicted_memory(10**6, **base, decode=True) > one
    assert predicted_memory(10**6, **base, pictures=4) > predicted_memory(10**6, **base, pictures=1)
    assert predicted_memory(10**6, **base, explain=True) > one
