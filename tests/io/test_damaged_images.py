"""Truncated and damaged PNG and JPEG files are refused; trailing data after the image is not damage.

libjpeg and libpng only print warnings for some of these and OpenCV returns filler pixels, so each case
is checked against what the decoder returns for the complete file.
"""

from __future__ import annotations

import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from gpuseg.errors import ImageError
from gpuseg.io.jpeg_scan import jpeg_problem
from gpuseg.io.read import decode_image, load_image

EOI = b"\xff\xd9"


def photo(rng, h=64, w=80, channels=3):
    """A smooth random picture: JPEG codes it in many small symbols, like a photo."""
    image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 1.5)
    return image[..., 0] if channels == 1 else image


def jpeg(image, **options):
    params = []
    for name, value in options.items():
        params += [getattr(cv2, f"IMWRITE_JPEG_{name.upper()}"), value]
    ok, buf = cv2.imencode(".jpg", image, params)
    assert ok and buf[-2:].tobytes() == EOI
    return buf.tobytes()


JPEG_KINDS = {
    "baseline": {},
    "progressive": {"progressive": 1},
    "restart markers": {"rst_interval": 2},
    "progressive with restarts": {"progressive": 1, "rst_interval": 3},
    "grey": {"channels": 1},
}


def jpeg_of_kind(rng, kind):
    options = dict(JPEG_KINDS[kind])
    channels = options.pop("channels", 3)
    return jpeg(photo(rng, channels=channels), quality=90, **options)


@pytest.mark.parametrize("kind", JPEG_KINDS)
def test_jpeg_with_trailing_data_is_read_as_usual(tmp_path, rng, kind):
    data = jpeg_of_kind(rng, kind)
    video = b"\x00\x00\x00\x18ftypmp42" + rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    path = tmp_path / "motion.jpg"
    path.write_bytes(data + video)  # a motion photo: the video follows the end-of-image marker
    np.testing.assert_array_equal(load_image(path), decode_image(data))


@pytest.mark.parametrize("kind", JPEG_KINDS)
@pytest.mark.parametrize("fraction", [0.35, 0.7, 0.95])
@pytest.mark.parametrize("end_marker", [False, True], ids=["cut", "cut+EOI"])
def test_truncated_jpeg_is_refused(tmp_path, rng, kind, fraction, end_marker):
    data = jpeg_of_kind(rng, kind)
    cut = data[: int(len(data) * fraction)] + (EOI if end_marker else b"")
    path = tmp_path / "cut.jpg"
    path.write_bytes(cut)
    with pytest.raises(ImageError, match=r"cut\.jpg: the JPEG .*truncated"):
        load_image(path)


def test_truncated_jpeg_with_end_marker_is_what_opencv_fills_with_grey(rng):
    """The case the check exists for: OpenCV decodes it without an error, into a partly grey image."""
    data = jpeg(photo(rng), quality=90)
    cut = data[: len(data) // 2] + EOI
    filled = cv2.imdecode(np.frombuffer(cut, np.uint8), cv2.IMREAD_COLOR)
    assert filled is not None and (filled[-8:] == 128).all()
    with pytest.raises(ImageError, match="stops at byte .* before the image is complete"):
        decode_image(cut)


def scan_starts(data):
    """Byte offsets of the SOS markers of a JPEG."""
    return [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xDA]


def test_progressive_jpeg_cut_between_scans_is_refused(rng):
    data = jpeg(photo(rng), quality=90, progressive=1)
    starts = scan_starts(data)
    assert len(starts) > 3
    for start in starts[1:]:  # every scan before `start` complete, the later ones missing
        with pytest.raises(ImageError, match="ends before all its scans"):
            decode_image(data[:start] + EOI)


def test_jpeg_restart_markers_out_of_sequence_are_refused(rng):
    data = bytearray(jpeg(photo(rng), quality=90, rst_interval=1))
    first = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD0)
    data[first + 1] = 0xD3
    with pytest.raises(ImageError, match="restart markers out of sequence"):
        decode_image(bytes(data))


def test_jpeg_check_agrees_with_the_decoder_on_random_cuts(rng):
    """A cut is refused unless nothing the decoder needs was lost (its image is then identical)."""
    for trial in range(24):
        options = {"quality": int(rng.integers(10, 100)), "progressive": trial % 2}
        if trial % 3 == 0:
            options["rst_interval"] = int(rng.integers(1, 6))
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        data = jpeg(photo(rng, h, w, channels=int(rng.choice([1, 3]))), **options)
        assert jpeg_problem(data) is None
        full = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        for cut in rng.integers(2, len(data) - 1, 4):
            for tail in (b"", EOI):
                damaged = data[:cut] + tail
                if jpeg_problem(damaged) is None:
                    got = cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_UNCHANGED)
                    assert got is not None and np.array_equal(got, full), (options, h, w, int(cut), tail)


def test_jpeg_checks_run_safely_in_threads(rng):
    complete = [jpeg_of_kind(rng, kind) for kind in JPEG_KINDS] * 4
    cut = [data[: len(data) // 2] + EOI for data in complete]
    with ThreadPoolExecutor(4) as pool:
        problems = list(pool.map(jpeg_problem, complete + cut))
    assert problems[: len(complete)] == [None] * len(complete)
    assert all(problem and "truncated" in problem for problem in problems[len(complete) :])


# ------------------------------------------------------------------------------------------------ PNG


def png(rng, h=64, w=80):
    ok, buf = cv2.imencode(".png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return buf.tobytes()


def chunks(data):
    """(type, offset) of each PNG chunk."""
    out, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        out.append((kind, pos))
        pos += 12 + length
    return out


def iend():
    return struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def test_png_with_trailing_data_is_read_as_usual(tmp_path, rng):
    data = png(rng)
    path = tmp_path / "trailing.png"
    path.write_bytes(data + b"appended by some tool" * 1000)
    np.testing.assert_array_equal(load_image(path), decode_image(data))


@pytest.mark.parametrize("end_chunk", [False, True], ids=["cut", "cut+IEND"])
def test_png_cut_inside_a_chunk_is_refused(tmp_path, rng, end_chunk):
    data = png(rng)
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2] + (iend() if end_chunk else b""))
    with pytest.raises(ImageError, match=r"cut\.png: the PNG file is (truncated|damaged: the CRC)"):
        load_image(path)


def test_png_cut_between_chunks_with_iend_is_refused(rng):
    data = png(rng, 200, 300)  # several IDAT chunks
    idat = [pos for kind, pos in chunks(data) if kind == b"IDAT"]
    assert len(idat) > 2
    with pytest.raises(ImageError, match="could not decode this PNG file"):
        decode_image(data[: idat[2]] + iend())


def test_png_with_a_damaged_byte_is_refused(rng):
    data = bytearray(png(rng))
    _, pos = next(c for c in chunks(bytes(data)) if c[0] == b"IDAT")
    data[pos + 100] ^= 0x10
    with pytest.raises(ImageError, match="the CRC of its IDAT chunk at byte 33 is wrong"):
        decode_image(bytes(data))
