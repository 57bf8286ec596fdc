"""Image headers read without decoding: size, channels and sample size, for every format gpuseg reads.

Each parser reads a few bytes at known offsets from a :class:`ByteSource` (a file read with ``pread``, or
bytes in memory) and never more than ``HEADER_READ_LIMIT`` bytes in all, so a header can be checked before
a single pixel is decoded, whatever the file claims. Channels and sample sizes are those OpenCV returns
for gpuseg's decoding flags, so that ``ImageHeader.decoded_bytes`` is the memory a decode will take.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Protocol, overload

HEADER_READ_LIMIT = 1 << 20
"""Most bytes any header parser reads (seeks past the rest)."""

FORMATS = (
    "PNG, JPEG, TIFF (and BigTIFF), BMP, WebP, PBM/PGM/PPM/PAM/PFM, Radiance HDR, Sun raster, GIF, JPEG 2000 and AVIF"
)


@dataclass(frozen=True)
class ImageHeader:
    """What an image file says about itself, as gpuseg will return it once decoded.

    Attributes
    ----------
    format : str
        ``"png"``, ``"jpeg"``, ``"tiff"``, ``"bmp"``, ``"webp"``, ``"pbm"``, ``"pgm"``, ``"ppm"``,
        ``"pam"``, ``"pfm"``, ``"hdr"``, ``"sunras"``, ``"gif"``, ``"jp2"``, ``"j2k"`` or ``"avif"``.
    height, width : int
        Rows and columns of the decoded image (after the EXIF orientation of a JPEG or the orientation
        tag of a TIFF, as OpenCV applies them).
    channels : int
        1 (grey), 3 (RGB) or 4 (RGBA).
    itemsize : int
        Bytes per channel as decoded: 1 (uint8), 2 (uint16), 4 (float32 or 32-bit integers), 8 (float64).
    """

    format: str
    height: int
    width: int
    channels: int
    itemsize: int

    @property
    def pixels(self) -> int:
        """``height * width``."""
        return self.height * self.width

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the decoded image: ``pixels * channels * itemsize``."""
        return self.pixels * self.channels * self.itemsize


class HeaderError(Exception):
    """A header that cannot be read; the message says why, without the file's name."""


class ByteSource(Protocol):
    size: int

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer at the end of the data)."""


class BytesSource:
    """Bytes in memory as a :class:`ByteSource`."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data).cast("B")
        self.size = len(self.data)

    def read(self, offset: int, n: int) -> bytes:
        return bytes(self.data[offset : offset + n])


class _Reader:
    """Bounded reads from a source: a budget of ``HEADER_READ_LIMIT`` bytes, and exact-length reads."""

    def __init__(self, source: ByteSource) -> None:
        self.source = source
        self.size = source.size
        self.budget = HEADER_READ_LIMIT

    def read(self, offset: int, n: int) -> bytes:
        if offset < 0 or offset >= self.size or n <= 0:
            return b""
        n = min(n, self.size - offset)
        self.budget -= n
        if self.budget < 0:
            raise HeaderError(f"its header is larger than {HEADER_READ_LIMIT:,} bytes; not an image gpuseg reads")
        return self.source.read(offset, n)

    def exact(self, offset: int, n: int, what: str) -> bytes:
        data = self.read(offset, n)
        if len(data) != n:
            raise HeaderError(f"the file ends inside its {what} (truncated)")
        return data

    def unpack(self, fmt: str, offset: int, what: str) -> tuple:
        return struct.unpack(fmt, self.exact(offset, struct.calcsize(fmt), what))


def parse_header(source: ByteSource) -> ImageHeader:
    """The :class:`ImageHeader` of the image in ``source``.

    Raises
    ------
    HeaderError
        Not a format gpuseg reads, a header that is truncated or inconsistent, or channels gpuseg does
        not handle.
    """
    if source.size == 0:
        raise HeaderError("the file is empty")
    reader = _Reader(source)
    head = reader.read(0, 32)
    parser = _parser_for(head)
    if parser is None:
        raise HeaderError(f"not an image gpuseg reads (it reads {FORMATS})")
    try:
        header = parser(reader)
    except (struct.error, IndexError, KeyError, ValueError) as exc:
        raise HeaderError(f"its header is damaged ({exc})") from None
    if header.height <= 0 or header.width <= 0:
        raise HeaderError(f"its {header.format} header claims a size of {header.width}x{header.height} pixels")
    if header.channels not in (1, 3, 4):
        raise HeaderError(f"{header.channels} channels; gpuseg reads grey, RGB and RGBA images")
    return header


def _parser_for(head: bytes):
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png
    if head.startswith(b"\xff\xd8\xff"):
        return _jpeg
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff
    if head.startswith(b"BM"):
        return _bmp
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp
    if re.match(rb"P[1-7Ff]\s", head):
        return _netpbm
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return _hdr
    if head.startswith(b"\x59\xa6\x6a\x95"):
        return _sunras
    if head.startswith((b"GIF87a", b"GIF89a")):
        return _gif
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n"):
        return _jp2
    if head.startswith(b"\xff\x4f\xff\x51"):
        return _j2k
    if head[4:8] == b"ftyp" and _is_avif_ftyp(head):
        return _avif
    return None


# ------------------------------------------------------------------------------------------------ PNG


def _png(r: _Reader) -> ImageHeader:
    length, kind, width, height, depth, color = r.unpack(">I4sIIBB", 8, "PNG header")
    if kind != b"IHDR" or length != 13:
        raise HeaderError("its PNG header has no IHDR chunk first")
    channels = {0: 1, 4: 4, 6: 4}.get(color, 0)
    if color in (2, 3):  # RGB or palette: RGBA when a tRNS chunk comes before the image data
        channels = 4 if _png_has_trns(r) else 3
    return ImageHeader("png", height, width, channels, 2 if depth == 16 else 1)


def _png_has_trns(r: _Reader) -> bool:
    offset = 8
    for _ in range(10_000):
        head = r.read(offset, 8)
        if len(head) < 8:
            return False
        length, kind = struct.unpack(">I4s", head)
        if kind == b"tRNS":
            return True
        if kind in (b"IDAT", b"IEND"):
            return False
        offset += 12 + length
    return False


# ----------------------------------------------------------------------------------------------- JPEG

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xDA)) | {0x01}


def jpeg_segments(r: _Reader, start: int = 2):
    """(marker, offset of its length field, segment length) of each JPEG segment up to the first scan."""
    offset = start
    for _ in range(100_000):
        byte, marker = r.unpack(">BB", offset, "JPEG header")
        if byte != 0xFF:
            raise HeaderError(f"its JPEG header is damaged (no marker at byte {offset})")
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in _STANDALONE_MARKERS:
            offset += 2
            continue
        (length,) = r.unpack(">H", offset + 2, "JPEG header")
        yield marker, offset + 2, length
        if marker == 0xDA:
            return
        offset += 2 + length
    raise HeaderError("its JPEG header has too many segments")


def _jpeg(r: _Reader) -> ImageHeader:
    orientation = 1
    for marker, offset, length in jpeg_segments(r):
        if marker == 0xE1 and orientation == 1 and r.read(offset + 2, 6) == b"Exif\x00\x00":
            orientation = _exif_orientation(r, offset + 8, offset + length)
        elif marker in _SOF_MARKERS:
            precision, height, width, components = r.unpack(">BHHB", offset + 2, "JPEG frame header")
            if height == 0:
                raise HeaderError("its JPEG height is given by a DNL marker, which OpenCV does not read")
            if orientation in (5, 6, 7, 8):  # OpenCV applies the EXIF orientation: these turn the image
                height, width = width, height
            return ImageHeader("jpeg", height, width, 1 if components == 1 else 3, 1 if precision <= 8 else 2)
        elif marker in (0xDA, 0xD9):
            break
    raise HeaderError("its JPEG header has no frame header (SOF) before the image data")


def _exif_orientation(r: _Reader, base: int, end: int) -> int:
    try:
        ifd = _TiffDirectory(r, base, limit=end)
        return ifd.first(274, 1)
    except HeaderError:
        return 1  # a damaged EXIF block: OpenCV ignores it too


# ----------------------------------------------------------------------------------------------- TIFF

_TIFF_TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}
_TIFF_INT_FORMATS = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}


class _TiffDirectory:
    """The first image file directory of a TIFF (or of an EXIF block) at ``base``: tag -> entry."""

    def __init__(self, r: _Reader, base: int, limit: int | None = None) -> None:
        self.r, self.base = r, base
        order = r.exact(base, 4, "TIFF header")
        if order[:2] not in (b"II", b"MM"):
            raise HeaderError("its TIFF header has no byte order mark")
        self.e = "<" if order[:2] == b"II" else ">"
        self.big = struct.unpack(self.e + "H", order[2:])[0] == 43
        if self.big:
            (offset,) = r.unpack(self.e + "Q", base + 8, "BigTIFF header")
            (count,) = r.unpack(self.e + "Q", base + offset, "TIFF directory")
            entry_size, first_entry = 20, base + offset + 8
        else:
            (offset,) = r.unpack(self.e + "I", base + 4, "TIFF header")
            (count,) = r.unpack(self.e + "H", base + offset, "TIFF directory")
            entry_size, first_entry = 12, base + offset + 2
        if count > 4096:
            raise HeaderError(f"its TIFF directory claims {count:,} entries")
        raw = r.exact(first_entry, count * entry_size, "TIFF directory")
        if limit is not None and first_entry + len(raw) > limit:
            raise HeaderError("its EXIF directory runs past its segment")
        entry = self.e + ("HHQ8s" if self.big else "HHI4s")
        self.entries: dict[int, tuple[int, int, bytes]] = {}
        for i in range(count):
            tag, kind, n, value = struct.unpack_from(entry, raw, i * entry_size)
            self.entries.setdefault(tag, (kind, n, value))

    @overload
    def first(self, tag: int, default: int) -> int: ...
    @overload
    def first(self, tag: int, default: None = None) -> int | None: ...

    def first(self, tag: int, default: int | None = None) -> int | None:
        """The first integer value of ``tag``, or ``default`` when the tag is absent."""
        if tag not in self.entries:
            return default
        kind, n, value = self.entries[tag]
        fmt = _TIFF_INT_FORMATS.get(kind)
        if fmt is None or n < 1:
            raise HeaderError(f"its TIFF tag {tag} is not an integer")
        size = struct.calcsize(fmt)
        if size * n > len(value):  # stored elsewhere: the entry holds its offset
            (offset,) = struct.unpack(self.e + ("Q" if self.big else "I"), value)
            value = self.r.exact(self.base + offset, size, f"TIFF tag {tag}")
        return struct.unpack_from(self.e + fmt, value)[0]


def _tiff(r: _Reader) -> ImageHeader:
    ifd = _TiffDirectory(r, 0)
    width, height = ifd.first(256), ifd.first(257)
    photometric = ifd.first(262)
    if width is None or height is None or photometric is None:
        raise HeaderError("its TIFF directory lacks the image width, length or photometric tag")
    grey = photometric in (0, 1)
    bits = ifd.first(258, 1)
    samples = ifd.first(277, 1 if grey else 3)
    if ifd.first(274, 1) in (5, 6, 7, 8):  # OpenCV applies the TIFF orientation: these turn the image
        height, width = width, height
    return ImageHeader("tiff", height, width, *_tiff_layout(photometric, bits, samples))


def _tiff_layout(photometric: int, bits: int, samples: int) -> tuple[int, int]:
    """(channels, itemsize) OpenCV decodes a TIFF into, following its TIFF decoder's rules."""
    if photometric in (32844, 32845) and samples == 3:  # LogLuv: float RGB
        return 3, 4
    if samples < 1 or samples > 4:
        raise HeaderError(f"{samples} samples per pixel; OpenCV reads TIFFs with 1 to 4")
    grey = photometric in (0, 1)
    if bits > 8 and (photometric > 2 or samples not in (1, 3, 4)):
        bits = 8
    if bits in (4, 8) and photometric == 3:  # palette
        return 3, 1
    if bits in (1, 8):
        return (1 if grey else samples), 1
    if bits in (10, 12, 14, 16):
        return (1 if grey else samples), 2
    if bits in (32, 64):
        return samples, bits // 8
    raise HeaderError(f"{bits} bits per sample; OpenCV reads TIFFs with 1, 8, 10, 12, 14, 16, 32 or 64")


# ------------------------------------------------------------------------------------------------ BMP


def _bmp(r: _Reader) -> ImageHeader:
    (size,) = r.unpack("<I", 14, "BMP header")
    if size == 12:  # OS/2 core header: OpenCV's BMP decoder reads it as grey, whatever its palette
        width, height = r.unpack("<HH", 18, "BMP header")
        return ImageHeader("bmp", height, width, 1, 1)
    if size < 36:
        raise HeaderError(f"its BMP info header has an unknown size of {size} bytes")
    width, height, _, bpp, _, _, _, _, colors_used = r.unpack("<iiHHIIiiI", 18, "BMP header")
    color = bpp > 8
    if bpp <= 8:
        entries = min(colors_used if 0 < colors_used <= 256 else 1 << bpp, 1 << bpp)
        palette = r.exact(14 + size, entries * 4, "BMP palette")
        color = any(palette[i] != palette[i + 1] or palette[i] != palette[i + 2] for i in range(0, len(palette), 4))
    channels = (4 if bpp == 32 else 3) if color else 1
    return ImageHeader("bmp", abs(height), width, channels, 1)


# ----------------------------------------------------------------------------------------------- WebP


def _webp(r: _Reader) -> ImageHeader:
    kind = r.exact(12, 4, "WebP header")
    data = r.exact(20, 10, "WebP header")
    if kind == b"VP8 ":
        if data[3:6] != b"\x9d\x01\x2a":
            raise HeaderError("its WebP (VP8) frame header is damaged")
        width, height = struct.unpack("<HH", data[6:10])
        return ImageHeader("webp", height & 0x3FFF, width & 0x3FFF, 3, 1)
    if kind == b"VP8L":
        if data[0] != 0x2F:
            raise HeaderError("its WebP (VP8L) header is damaged")
        (bits,) = struct.unpack("<I", data[1:5])
        alpha = (bits >> 28) & 1
        return ImageHeader("webp", ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1, 4 if alpha else 3, 1)
    if kind == b"VP8X":
        width = int.from_bytes(data[4:7], "little") + 1
        height = int.from_bytes(data[7:10], "little") + 1
        return ImageHeader("webp", height, width, 4 if data[0] & 0x10 else 3, 1)
    raise HeaderError(f"its WebP chunk {kind!r} is not VP8, VP8L or VP8X")


# -------------------------------------------------------------------------- PBM, PGM, PPM, PAM, PFM


def _netpbm(r: _Reader) -> ImageHeader:
    text = r.read(0, 4096)
    magic = text[:2]
    if magic == b"P7":
        return _pam(text)
    tokens = re.sub(rb"#[^\n\r]*", b" ", text[2:]).split(maxsplit=3)
    numbers = 2 if magic in (b"P1", b"P4") else 3
    if len(tokens) < numbers:
        raise HeaderError(f"the file ends inside its {magic.decode()} header (truncated)")
    try:
        values = [int(t) for t in tokens[:2]] + ([float(tokens[2])] if numbers == 3 else [])
    except ValueError:
        raise HeaderError(f"its {magic.decode()} header is not '{magic.decode()} width height ...'") from None
    width, height = int(values[0]), int(values[1])
    if magic in (b"PF", b"Pf"):
        return ImageHeader("pfm", height, width, 3 if magic == b"PF" else 1, 4)
    fmt = {b"P1": "pbm", b"P4": "pbm", b"P2": "pgm", b"P5": "pgm", b"P3": "ppm", b"P6": "ppm"}[magic]
    itemsize = 2 if numbers == 3 and values[2] > 255 else 1
    return ImageHeader(fmt, height, width, 3 if fmt == "ppm" else 1, itemsize)


def _pam(text: bytes) -> ImageHeader:
    end = text.find(b"ENDHDR")
    if end < 0:
        raise HeaderError("its PAM header has no ENDHDR within 4 KiB")
    fields = {}
    for line in text[2:end].splitlines():
        parts = line.split(b"#", 1)[0].split()
        if len(parts) >= 2:
            fields[parts[0]] = parts[1]
    try:
        width, height, depth = (int(fields[k]) for k in (b"WIDTH", b"HEIGHT", b"DEPTH"))
        maxval = int(fields.get(b"MAXVAL", b"255"))
    except (KeyError, ValueError):
        raise HeaderError("its PAM header lacks WIDTH, HEIGHT or DEPTH") from None
    return ImageHeader("pam", height, width, depth, 2 if maxval > 255 else 1)


# ------------------------------------------------------------------------------------- Radiance HDR


def _hdr(r: _Reader) -> ImageHeader:
    text = r.read(0, 65536)
    end = text.find(b"\n\n")
    match = re.match(rb"-Y (\d+) \+X (\d+)\s", text[end + 2 :]) if end >= 0 else None
    if match is None:
        raise HeaderError("its Radiance HDR header has no '-Y height +X width' line (other orientations are not read)")
    return ImageHeader("hdr", int(match[1]), int(match[2]), 3, 4)


# --------------------------------------------------------------------------------------- Sun raster


def _sunras(r: _Reader) -> ImageHeader:
    _, width, height, depth, _, _, map_type, map_length = r.unpack(">8I", 0, "Sun raster header")
    color = depth > 8
    if depth <= 8 and map_type == 1 and 0 < map_length <= 768:
        palette = r.exact(32, map_length, "Sun raster palette")
        n = map_length // 3
        red, green, blue = palette[:n], palette[n : 2 * n], palette[2 * n : 3 * n]
        color = red != green or green != blue
    return ImageHeader("sunras", height, width, 3 if color else 1, 1)


# ------------------------------------------------------------------------------------------------ GIF


def _gif(r: _Reader) -> ImageHeader:
    width, height, flags = r.unpack("<HHB", 6, "GIF header")
    offset = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
    transparent = False
    for _ in range(10_000):  # extensions before the first image: its graphic control says if it is RGBA
        block = r.read(offset, 2)
        if len(block) < 2 or block[0] != 0x21:
            break
        if block[1] == 0xF9:
            transparent = bool(r.exact(offset + 3, 1, "GIF graphic control")[0] & 1)
        offset += 2
        while (size := r.exact(offset, 1, "GIF extension")[0]) != 0:
            offset += 1 + size
        offset += 1
    return ImageHeader("gif", height, width, 4 if transparent else 3, 1)


# ------------------------------------------------------------------------------------------ JPEG 2000


def _jp2(r: _Reader) -> ImageHeader:
    offset = 0
    for _ in range(1000):
        length, kind = r.unpack(">I4s", offset, "JPEG 2000 box")
        header = 8
        if length == 1:
            (length,) = r.unpack(">Q", offset + 8, "JPEG 2000 box")
            header = 16
        if kind == b"jp2c":
            return _j2k(r, offset + header, "jp2")
        if length == 0:
            break
        if length < header:
            raise HeaderError(f"its JPEG 2000 box {kind!r} claims {length} bytes")
        offset += length
    raise HeaderError("its JPEG 2000 file has no codestream box")


def _j2k(r: _Reader, start: int = 0, fmt: str = "j2k") -> ImageHeader:
    marker, siz = r.unpack(">HH", start, "JPEG 2000 codestream")
    if (marker, siz) != (0xFF4F, 0xFF51):
        raise HeaderError("its JPEG 2000 codestream does not start with SOC and SIZ")
    x1, y1, x0, y0 = r.unpack(">4I", start + 8, "JPEG 2000 size")
    (components,) = r.unpack(">H", start + 40, "JPEG 2000 size")
    sizes = r.exact(start + 42, 3 * components, "JPEG 2000 components")[::3]
    if any(s & 0x80 for s in sizes):
        raise HeaderError("its JPEG 2000 components are signed, which OpenCV does not read")
    precision = max((s & 0x7F) + 1 for s in sizes) if sizes else 0
    if precision < 8:
        raise HeaderError(f"its JPEG 2000 precision is {precision} bits; OpenCV reads 8 bits or more")
    itemsize = 1 if precision == 8 else 2 if precision <= 16 else 4 if precision <= 23 else 8
    return ImageHeader(fmt, y1 - y0, x1 - x0, components, itemsize)


# ----------------------------------------------------------------------------------------------- AVIF

_AVIF_ALPHA = (b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha", b"urn:mpeg:hevc:2015:auxid:1")


def _is_avif_ftyp(head: bytes) -> bool:
    (length,) = struct.unpack(">I", head[:4])
    brands = head[8:12] + head[16 : min(length, len(head))]
    return any(brands[i : i + 4] in (b"avif", b"avis") for i in range(0, len(brands) - 3, 4))


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, payload start, payload end) of each ISO-BMFF box in ``data[start:end]``."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if length == 1 and offset + 16 <= end:
            (length,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif length == 0:
            length = end - offset
        if length < header or offset + length > end:
            raise HeaderError(f"its AVIF box {kind!r} is damaged")
        yield kind, offset + header, offset + length
        offset += length


def _avif(r: _Reader) -> ImageHeader:
    offset = 0
    for _ in range(1000):
        length, kind = r.unpack(">I4s", offset, "AVIF box")
        if kind == b"meta":
            if length < 12 or length > HEADER_READ_LIMIT // 2:
                raise HeaderError(f"its AVIF metadata box claims {length:,} bytes")
            try:
                return _avif_meta(r.exact(offset + 12, length - 12, "AVIF metadata"))
            except (struct.error, IndexError):
                raise HeaderError("its AVIF metadata is damaged") from None
        if length < 8:
            break
        offset += length
    raise HeaderError("its AVIF file has no metadata box (an image sequence without a still image?)")


def _avif_meta(meta: bytes) -> ImageHeader:
    boxes = {kind: (start, end) for kind, start, end in _boxes(meta)}
    primary = 1
    if b"pitm" in boxes:
        start, _ = boxes[b"pitm"]
        primary = struct.unpack_from(">H" if meta[start] == 0 else ">I", meta, start + 4)[0]
    if b"iprp" not in boxes:
        raise HeaderError("its AVIF metadata has no item properties")
    iprp = {kind: (start, end) for kind, start, end in _boxes(meta, *boxes[b"iprp"])}
    if b"ipco" not in iprp or b"ipma" not in iprp:
        raise HeaderError("its AVIF metadata has no property associations")
    properties = list(_boxes(meta, *iprp[b"ipco"]))
    associations = _avif_associations(meta, *iprp[b"ipma"])
    width = height = None
    monochrome, itemsize, alpha = False, 1, False
    for item, indices in associations.items():
        props = [properties[i - 1] for i in indices if 0 < i <= len(properties)]
        for kind, start, end in props:
            if kind == b"auxC" and meta[start + 4 : end].split(b"\x00")[0] in _AVIF_ALPHA:
                alpha = True
            if item != primary:
                continue
            if kind == b"ispe":
                width, height = struct.unpack_from(">II", meta, start + 4)
            elif kind == b"av1C" and end - start >= 3:
                monochrome = bool(meta[start + 2] & 0x10)
                itemsize = 2 if meta[start + 2] & 0x40 else 1
    if width is None or height is None:
        raise HeaderError("its AVIF primary image has no size property (ispe)")
    return ImageHeader("avif", height, width, (1 if monochrome else 3) + alpha, itemsize)


def _avif_associations(meta: bytes, start: int, end: int) -> dict[int, list[int]]:
    version, flags = meta[start], int.from_bytes(meta[start + 1 : start + 4], "big")
    (count,) = struct.unpack_from(">I", meta, start + 4)
    offset, items = start + 8, {}
    for _ in range(count):
        if offset + (3 if version < 1 else 5) > end:
            raise HeaderError("its AVIF property associations are damaged")
        item = struct.unpack_from(">H" if version < 1 else ">I", meta, offset)[0]
        offset += 2 if version < 1 else 4
        n = meta[offset]
        offset += 1
        wide = flags & 1
        raw = [int.from_bytes(meta[offset + k * (1 + wide) : offset + (k + 1) * (1 + wide)], "big") for k in range(n)]
        offset += n * (1 + wide)
        items[item] = [v & (0x7FFF if wide else 0x7F) for v in raw]
    return items
