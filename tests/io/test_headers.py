"""read_header: every format gpuseg reads, read from a few bytes, agreeing with what OpenCV decodes."""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest

from gpuseg.errors import ImageError
from gpuseg.io import headers
from gpuseg.io.headers import BytesSource, ImageHeader, parse_header
from gpuseg.io.read import load_image, read_header


def encode(suffix, image, params=()):
    ok, buf = cv2.imencode(suffix, image, list(params))
    assert ok
    return buf.tobytes()


def random_image(rng, dtype, channels, h=21, w=34):
    top = np.iinfo(dtype).max if dtype != np.float32 else 1
    shape = (h, w) if channels == 1 else (h, w, channels)
    return (rng.random(shape) * top).astype(dtype)


def decoded_layout(data, fmt):
    """(height, width, channels, itemsize) of what OpenCV decodes, with gpuseg's flags."""
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR if fmt == "jpeg" else cv2.IMREAD_UNCHANGED
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    assert image is not None
    channels = 1 if image.ndim == 2 else image.shape[2]
    return image.shape[0], image.shape[1], channels, image.dtype.itemsize


OPENCV_CASES = [
    (suffix, dtype, channels)
    for suffix, dtypes, channel_counts in [
        (".png", (np.uint8, np.uint16), (1, 3, 4)),
        (".jpg", (np.uint8,), (1, 3)),
        (".tiff", (np.uint8, np.uint16, np.float32), (1, 3, 4)),
        (".bmp", (np.uint8,), (1, 3, 4)),
        (".webp", (np.uint8,), (3, 4)),
        (".pgm", (np.uint8, np.uint16), (1,)),
        (".ppm", (np.uint8, np.uint16), (3,)),
        (".pbm", (np.uint8,), (1,)),
        (".pam", (np.uint8,), (1, 3)),
        (".pfm", (np.float32,), (1, 3)),
        (".hdr", (np.float32,), (3,)),
        (".ras", (np.uint8,), (1, 3)),
        (".gif", (np.uint8,), (3, 4)),
        (".avif", (np.uint8,), (1, 3, 4)),
    ]
    for dtype in dtypes
    for channels in channel_counts
]


@pytest.mark.parametrize(("suffix", "dtype", "channels"), OPENCV_CASES)
def test_header_matches_decoded_image(rng, suffix, dtype, channels):
    if not cv2.haveImageWriter(f"x{suffix}"):
        pytest.skip(f"this OpenCV does not write {suffix}")
    data = encode(suffix, random_image(rng, dtype, channels))
    header = read_header(data)
    assert (header.height, header.width, header.channels, header.itemsize) == decoded_layout(data, header.format)
    assert header.pixels == 21 * 34
    assert header.decoded_bytes == 21 * 34 * header.channels * header.itemsize


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_jpeg2000_header(rng, channels):
    data = encode(".jp2", random_image(rng, np.uint16, channels, 64, 80))
    header = read_header(data)
    assert header.format == "jp2"
    assert (header.height, header.width, header.channels, header.itemsize) == decoded_layout(data, "jp2")


def pillow_cases():
    """Variants OpenCV does not write: palettes, transparency, CMYK, lossy WebP with alpha, raw J2K."""
    PIL = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    grey = PIL.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8))
    rgb = PIL.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    rgba = PIL.fromarray(rng.integers(0, 255, (20, 30, 4), dtype=np.uint8))
    palette = rgb.convert("P")
    cases = {
        "png grey tRNS": (grey, "PNG", {"transparency": 5}),
        "png palette": (palette, "PNG", {}),
        "png palette tRNS": (palette, "PNG", {"transparency": 3}),
        "png rgb tRNS": (rgb, "PNG", {"transparency": (1, 2, 3)}),
        "png grey alpha": (rgba.convert("LA"), "PNG", {}),
        "png 1 bit": (grey.convert("1"), "PNG", {}),
        "bmp colour palette": (palette, "BMP", {}),
        "bmp grey palette": (grey.convert("P"), "BMP", {}),
        "bmp 1 bit": (grey.convert("1"), "BMP", {}),
        "gif": (palette, "GIF", {}),
        "webp lossy": (rgb, "WEBP", {"quality": 80}),
        "webp lossy alpha (VP8X)": (rgba, "WEBP", {"quality": 80}),
        "webp lossless alpha (VP8L)": (rgba, "WEBP", {"lossless": True}),
        "jpeg cmyk": (rgb.convert("CMYK"), "JPEG", {}),
        "jpeg progressive": (rgb, "JPEG", {"progressive": True}),
        "tiff palette": (palette, "TIFF", {}),
        "j2k codestream": (rgb, "JPEG2000", {"no_jp2": True}),
    }
    out = []
    for name, (image, fmt, options) in cases.items():
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        out.append(pytest.param(buffer.getvalue(), id=name))
    return out


@pytest.mark.parametrize("data", pillow_cases())
def test_header_matches_decoded_image_pillow_variants(data):
    header = read_header(data)
    assert (header.height, header.width, header.channels, header.itemsize) == decoded_layout(data, header.format)


def tiff_bytes(array, **options):
    tifffile = pytest.importorskip("tifffile")
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "shape", "dtype", "options"),
    [
        ("bigtiff little-endian", (20, 30, 3), np.uint8, {"photometric": "rgb", "bigtiff": True}),
        ("bigtiff big-endian", (20, 30, 3), np.uint8, {"photometric": "rgb", "bigtiff": True, "byteorder": ">"}),
        ("classic big-endian 16 bit", (20, 30), np.uint16, {"byteorder": ">"}),
        ("grey + alpha (read as grey)", (20, 30, 2), np.uint8, {"photometric": "minisblack", "extrasamples": [2]}),
        ("cmyk", (20, 30, 4), np.uint8, {"photometric": "separated"}),
        ("float64", (20, 30), np.float64, {}),
        ("planar rgb", (3, 20, 30), np.uint8, {"photometric": "rgb", "planarconfig": "separate"}),
        ("two pages: the first is read", (2, 20, 30), np.uint8, {}),
        ("orientation 6 turns it", (20, 30, 3), np.uint8, {"photometric": "rgb", "extratags": [(274, 3, 1, 6, 1)]}),
    ],
)  # fmt: skip
def test_tiff_variants(rng, name, shape, dtype, options):
    data = tiff_bytes((rng.random(shape) * 200).astype(dtype), **options)
    header = read_header(data)
    assert (header.height, header.width, header.channels, header.itemsize) == decoded_layout(data, "tiff")


def with_exif_orientation(jpeg: bytes, orientation: int, order: str = ">") -> bytes:
    mark = b"MM\x00*" if order == ">" else b"II*\x00"
    tiff = mark + struct.pack(order + "IH", 8, 1) + struct.pack(order + "HHIHH", 0x0112, 3, 1, orientation, 0)
    payload = b"Exif\x00\x00" + tiff + struct.pack(order + "I", 0)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


@pytest.mark.parametrize(("orientation", "order"), [(1, ">"), (3, "<"), (6, ">"), (8, "<")])
def test_jpeg_exif_orientation_turns_the_header(rng, orientation, order):
    data = with_exif_orientation(encode(".jpg", random_image(rng, np.uint8, 3)), orientation, order)
    header = read_header(data)
    assert (header.height, header.width) == ((34, 21) if orientation >= 5 else (21, 34))
    assert (header.height, header.width, header.channels, header.itemsize) == decoded_layout(data, "jpeg")


class CountingSource(BytesSource):
    def __init__(self, data):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, offset, n):
        out = super().read(offset, n)
        self.bytes_read += len(out)
        return out


def test_jpeg_frame_header_after_large_app_segments_is_read_without_reading_them(rng):
    jpeg = encode(".jpg", random_image(rng, np.uint8, 3))
    app = b"\xff\xe2" + struct.pack(">H", 65535) + bytes(65533)
    data = jpeg[:2] + app * 40 + jpeg[2:]  # 2.6 MB of metadata before the frame header
    source = CountingSource(data)
    assert (parse_header(source).height, parse_header(source).width) == (21, 34)
    assert source.bytes_read < 8192


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tiff", ".bmp", ".webp", ".gif", ".ppm"])
def test_header_reads_a_bounded_number_of_bytes_of_a_large_file(rng, suffix):
    image = (rng.random((600, 800, 3)) * 255).astype(np.uint8)  # about 1.4 MB in the lossless formats
    source = CountingSource(encode(suffix, image))
    header = parse_header(source)
    assert (header.height, header.width) == (600, 800)
    assert source.bytes_read <= 8192 < source.size // 10


def test_header_of_a_file_is_the_header_of_its_bytes(tmp_path, rng):
    data = encode(".png", random_image(rng, np.uint16, 4))
    (tmp_path / "x.png").write_bytes(data)
    assert read_header(tmp_path / "x.png") == read_header(data) == ImageHeader("png", 21, 34, 4, 2)


def tiny_tiff(width: int, height: int, order: str = "<") -> bytes:
    """An 8-bit grey TIFF whose directory claims width x height, with 4 bytes of pixel data."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8), (277, 3, 1),
            (278, 4, height), (279, 4, 4)]  # fmt: skip
    ifd = struct.pack(order + "H", len(tags))
    for tag, kind, value in tags:
        packed = struct.pack(order + ("HH" if kind == 3 else "I"), value, *(() if kind == 4 else (0,)))
        ifd += struct.pack(order + "HHI", tag, kind, 1) + packed
    mark = b"II*\x00" if order == "<" else b"MM\x00*"
    return mark + struct.pack(order + "I", 12) + b"\x80\x80\x80\x80" + ifd + b"\x00\x00\x00\x00"


def test_tiny_tiff_claiming_30000x30000_is_refused_before_decoding(tmp_path, monkeypatch):
    assert read_header(tiny_tiff(2, 2)) == ImageHeader("tiff", 2, 2, 1, 1)
    assert load_image(_write(tmp_path / "ok.tiff", tiny_tiff(2, 2))).shape == (2, 2)  # a real, decodable TIFF

    def no_decoding(*args, **kwargs):
        raise AssertionError("the decoder was called")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    for order in "<>":
        path = _write(tmp_path / f"huge{order == '<'}.tiff", tiny_tiff(30000, 30000, order))
        assert path.stat().st_size < 200
        assert read_header(path).pixels == 900_000_000
        with pytest.raises(ImageError, match="900,000,000 pixels is more than the limit of 268,435,456"):
            load_image(path)


def _write(path, data):
    path.write_bytes(data)
    return path


def test_unknown_format_lists_the_formats_gpuseg_reads(tmp_path):
    path = _write(tmp_path / "movie.png", b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    with pytest.raises(ImageError, match="not an image gpuseg reads") as caught:
        read_header(path)
    assert str(path) in str(caught.value)
    for name in ("PNG", "JPEG", "TIFF", "BMP", "WebP", "PGM", "GIF", "JPEG 2000", "AVIF"):
        assert name in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00", "ends inside its PNG header"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "ends inside its JPEG header"),
        (b"II*\x00\x08\x00\x00\x00\x05", "ends inside its TIFF directory"),
        (b"P6\n30", "ends inside its P6 header"),
        (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10\x03" + bytes(9), "DNL marker"),
        (b"II*\x00" + struct.pack("<IHHHII", 8, 1, 257, 3, 1, 5), "lacks the image width"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + bytes(13), "claims a size of 0x0 pixels"),
    ],
)
def test_damaged_headers_are_refused_with_the_reason(data, message):
    with pytest.raises(ImageError, match=message):
        read_header(data)


def test_channel_counts_gpuseg_does_not_read_are_refused_from_the_header():
    pam = b"P7\nWIDTH 2\nHEIGHT 2\nDEPTH 2\nMAXVAL 255\nTUPLTYPE GRAYSCALE_ALPHA\nENDHDR\n" + bytes(8)
    with pytest.raises(ImageError, match="2 channels; gpuseg reads grey, RGB and RGBA"):
        read_header(pam)
    five = tiff_bytes(np.zeros((6, 7, 5), np.uint8), photometric="rgb", extrasamples=[0, 0], planarconfig="contig")
    with pytest.raises(ImageError, match="5 samples per pixel; OpenCV reads TIFFs with 1 to 4"):
        read_header(five)


def test_header_read_limit_is_enforced(monkeypatch):
    monkeypatch.setattr(headers, "HEADER_READ_LIMIT", 64)
    with pytest.raises(ImageError, match="header is larger than 64 bytes"):
        read_header(b"P7\n" + b"# comment\n" * 100 + b"WIDTH 2\nHEIGHT 2\nDEPTH 1\nMAXVAL 255\nENDHDR\n")
