"""Image sizes read from file headers, before anything is decoded, so that huge images are refused up front.

Each reader takes a binary file object positioned anywhere, seeks where its format says, and reads a bounded
number of bytes; none decodes pixels.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from gpuseg.errors import ImageError

FORMATS = "PNG, JPEG, TIFF, BMP, WebP, PNM (PBM, PGM, PPM), PAM and PFM"
"""The formats gpuseg reads (those whose size it can read from the header)."""


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says: its ``format``, size, and the ``channels`` (1, 3 or 4) and bytes per channel
    (``itemsize``) of the image gpuseg decodes from it (at most those, where only decoding would tell)."""

    format: str
    height: int
    width: int
    channels: int
    itemsize: int

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def decoded_bytes(self) -> int:
        return self.pixels * self.channels * self.itemsize


def read_header(source: bytes | BinaryIO, name: str = "<bytes>") -> ImageHeader:
    """The :class:`ImageHeader` of encoded image bytes or of a binary file object.

    Raises
    ------
    ImageError
        Not one of :data:`FORMATS`, or a header too damaged to give a size.
    """
    f = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    f.seek(0)
    magic = f.read(16)
    for test, reader in _READERS:
        if test(magic):
            try:
                header = reader(f)
            except _Truncated as exc:
                raise ImageError(f"{name}: the file is truncated ({exc})") from exc
            except (struct.error, ValueError, IndexError, KeyError) as exc:
                raise ImageError(f"{name}: its header is damaged ({exc})") from exc
            if header.height < 1 or header.width < 1:
                raise ImageError(f"{name}: the header says {header.width}x{header.height} pixels: no pixels")
            return header
    raise ImageError(f"{name}: not an image gpuseg reads (it reads {FORMATS})")


class _Truncated(ValueError):
    pass


def _read(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    data = f.read(size)
    if len(data) < size:
        raise _Truncated(f"it ends at byte {offset + len(data)}, inside its header")
    return data


def _png(f: BinaryIO) -> ImageHeader:
    chunk = _read(f, 8, 25)
    if chunk[4:8] != b"IHDR":
        raise ValueError("no IHDR chunk first")
    width, height, depth, kind = struct.unpack(">IIBB", chunk[8:18])
    channels = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}.get(kind)  # a palette may carry transparency: 4 at most
    if channels is None:
        raise ValueError(f"colour type {kind}")
    return ImageHeader("png", height, width, channels, 2 if depth == 16 else 1)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(f: BinaryIO) -> ImageHeader:
    offset = 2
    for _ in range(10_000):  # markers before the frame header (APPn, DQT, ...), each skipped by its length
        marker, length = struct.unpack(">2sH", _read(f, offset, 4))
        if marker[0] != 0xFF:
            raise ValueError(f"no marker at byte {offset}")
        if marker[1] in _SOF:
            precision, height, width, components = struct.unpack(">BHHB", _read(f, offset + 4, 6))
            return ImageHeader("jpeg", height, width, 1 if components == 1 else 3, 2 if precision > 8 else 1)
        if marker[1] in (0xD9, 0xDA):
            raise ValueError("no frame header before the image data")
        offset += 2 + length
    raise ValueError("no frame header")


def _tiff(f: BinaryIO) -> ImageHeader:
    head = _read(f, 0, 16)
    order = "<" if head[:2] == b"II" else ">"
    big = struct.unpack(order + "H", head[2:4])[0] == 43
    if big:
        offset, count_fmt, entry_size, value_fmt, inline = struct.unpack(order + "Q", head[8:16])[0], "Q", 20, "Q", 8
    else:
        offset, count_fmt, entry_size, value_fmt, inline = struct.unpack(order + "I", head[4:8])[0], "H", 12, "I", 4
    count_size = struct.calcsize(count_fmt)
    n = struct.unpack(order + count_fmt, _read(f, offset, count_size))[0]
    if n > 4096:
        raise ValueError(f"{n} entries in the first directory")
    table = _read(f, offset + count_size, n * entry_size)
    sizes = {1: 1, 3: 2, 4: 4, 16: 8}  # BYTE, SHORT, LONG, LONG8
    tags: dict[int, int] = {}
    for i in range(n):
        entry = table[i * entry_size : (i + 1) * entry_size]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag not in (256, 257, 258, 277) or kind not in sizes:
            continue
        value = entry[4 + struct.calcsize(value_fmt) :]
        count = struct.unpack(order + value_fmt, entry[4 : 4 + struct.calcsize(value_fmt)])[0]
        if count * sizes[kind] > inline:  # the values live elsewhere: the first one is enough
            value = _read(f, struct.unpack(order + value_fmt, value)[0], sizes[kind])
        tags[tag] = struct.unpack(order + {1: "B", 3: "H", 4: "I", 16: "Q"}[kind], value[: sizes[kind]])[0]
    if 256 not in tags or 257 not in tags:
        raise ValueError("no image width or length in the first directory")
    samples, bits = tags.get(277, 1), tags.get(258, 1)
    channels = 1 if samples == 1 else (3 if samples == 3 else 4)
    return ImageHeader("tiff", tags[257], tags[256], channels, max(1, min((bits + 7) // 8, 4)))


def _bmp(f: BinaryIO) -> ImageHeader:
    head = _read(f, 14, 16)
    if struct.unpack("<I", head[:4])[0] == 12:  # OS/2 core header
        width, height, _, bits = struct.unpack("<HHHH", head[4:12])
    else:
        width, height, _, bits = struct.unpack("<iiHH", head[4:16])
    return ImageHeader("bmp", abs(height), width, 4 if bits == 32 else 3, 1)


def _webp(f: BinaryIO) -> ImageHeader:
    chunk = _read(f, 12, 8)
    kind = chunk[:4]
    if kind == b"VP8X":
        data = _read(f, 20, 10)
        width = int.from_bytes(data[4:7], "little") + 1
        height = int.from_bytes(data[7:10], "little") + 1
        return ImageHeader("webp", height, width, 4 if data[0] & 0x10 else 3, 1)
    if kind == b"VP8L":
        data = _read(f, 20, 5)
        if data[0] != 0x2F:
            raise ValueError("no lossless signature")
        bits = int.from_bytes(data[1:5], "little")
        width, height, alpha = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, (bits >> 28) & 1
        return ImageHeader("webp", height, width, 4 if alpha else 3, 1)
    if kind == b"VP8 ":
        data = _read(f, 20, 10)
        if data[3:6] != b"\x9d\x01\x2a":
            raise ValueError("no lossy start code")
        width, height = struct.unpack("<HH", data[6:10])
        return ImageHeader("webp", height & 0x3FFF, width & 0x3FFF, 3, 1)
    raise ValueError(f"first chunk {kind!r}")


def _pnm(f: BinaryIO) -> ImageHeader:
    text = _read(f, 0, 2)
    f.seek(0)
    head = f.read(4096)
    kind = text.decode("ascii")
    if kind == "P7":  # PAM: KEY value lines up to ENDHDR
        fields = dict(
            line.split(maxsplit=1) for line in head.decode("ascii", "replace").splitlines()[1:] if " " in line
        )
        channels = int(fields["DEPTH"])
        return ImageHeader(
            "pam", int(fields["HEIGHT"]), int(fields["WIDTH"]), 1 if channels == 1 else (3 if channels == 3 else 4),
            2 if int(fields.get("MAXVAL", "255")) > 255 else 1,
        )  # fmt: skip
    tokens: list[bytes] = []
    for line in head[2:].splitlines():
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 3:
            break
    width, height = int(tokens[0]), int(tokens[1])
    if kind in ("Pf", "PF"):
        return ImageHeader("pfm", height, width, 1 if kind == "Pf" else 3, 4)
    maxval = 1 if kind in ("P1", "P4") else int(tokens[2])
    return ImageHeader("pnm", height, width, 3 if kind in ("P3", "P6") else 1, 2 if maxval > 255 else 1)


def _is_pnm(magic: bytes) -> bool:
    return magic[:1] == b"P" and magic[1:2] in b"1234567fF" and magic[2:3] in b" \t\r\n"


_READERS: tuple[tuple[Callable[[bytes], bool], Callable[[BinaryIO], ImageHeader]], ...] = (
    (lambda m: m.startswith(b"\x89PNG\r\n\x1a\n"), _png),
    (lambda m: m.startswith(b"\xff\xd8\xff"), _jpeg),
    (lambda m: m[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff),
    (lambda m: m.startswith(b"BM"), _bmp),
    (lambda m: m[:4] == b"RIFF" and m[8:12] == b"WEBP", _webp),
    (_is_pnm, _pnm),
)
