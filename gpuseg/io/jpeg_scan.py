"""Is a JPEG's image data complete? A walk of its Huffman-coded scans, without decoding a pixel.

libjpeg does not fail on a truncated or damaged JPEG: it prints "Premature end of JPEG file" or "Corrupt
JPEG data" on stderr and fills the rest of the image with grey, and OpenCV returns that image. There is
no per-call hook to see those warnings (they go to the process's stderr, shared by every thread), so
gpuseg checks the data itself: it parses the markers and walks every Huffman-coded block of every scan
(baseline, extended and progressive), counting bits the way libjpeg does, and reports where the data
stops before the last block, or where a code is invalid. The walk is a pure function of the bytes
(compiled with numba, no global state, the GIL released), so any number of threads may run it at once.

Arithmetic-coded, lossless and hierarchical JPEGs (rare) are left to the decoder.
"""

from __future__ import annotations

import struct

import numpy as np
from numba import njit

OK, OUT_OF_DATA, MARKER_TOO_EARLY, BAD_CODE, BAD_RESTART = 0, 1, 2, 3, 4
LOOKAHEAD = 9
_HUFFMAN_SOF = (0xC0, 0xC1, 0xC2)  # baseline, extended sequential, progressive
_OTHER_SOF = frozenset(range(0xC3, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_problem(data: bytes | bytearray) -> str | None:
    """Why the JPEG in ``data`` is incomplete or damaged, or None when every scan is complete.

    Data after the end-of-image marker (a motion photo's video, for instance) is not looked at.
    """
    try:
        return _Walk(data).run()
    except (struct.error, IndexError, ValueError):
        return f"the JPEG file ends inside a marker segment at byte {len(data):,} (truncated)"


class _Walk:
    def __init__(self, data: bytes | bytearray) -> None:
        self.data = data
        self.array = np.frombuffer(data, dtype=np.uint8)
        self.tables = _HuffmanTables()
        self.frame: _Frame | None = None
        self.restart = 0
        self.precision: dict[int, list[int]] = {}  # component id -> per coefficient: bits still to come (64: none)

    def run(self) -> str | None:
        data, n, pos = self.data, len(self.data), 2
        while True:
            if pos + 2 > n:
                return f"the JPEG file ends at byte {n:,} without its end-of-image marker (truncated)"
            if data[pos] != 0xFF:
                return f"the JPEG data is damaged: no marker at byte {pos:,}"
            marker = data[pos + 1]
            if marker == 0xFF:
                pos += 1
                continue
            if marker == 0xD9:
                return self._missing_scans()
            if 0xD0 <= marker <= 0xD8 or marker == 0x01:
                pos += 2
                continue
            (length,) = struct.unpack_from(">H", data, pos + 2)
            if pos + 2 + length > n:
                return f"the JPEG file ends inside a marker segment at byte {n:,} (truncated)"
            segment = data[pos + 4 : pos + 2 + length]
            if marker in _OTHER_SOF:
                return None  # arithmetic coding, lossless or hierarchical: left to the decoder
            if marker in _HUFFMAN_SOF and self.frame is None:
                self.frame = _Frame(segment, progressive=marker == 0xC2)
            elif marker == 0xC4:
                problem = self.tables.define(segment)
                if problem:
                    return problem
            elif marker == 0xDD:
                (self.restart,) = struct.unpack_from(">H", segment)
            elif marker == 0xDA:
                if self.frame is None:
                    return "the JPEG data is damaged: a scan comes before the frame header"
                if not self.tables.defined.any():
                    return None  # Motion-JPEG frame without tables: the decoder supplies standard ones
                problem, pos = self._scan(segment, pos + 2 + length)
                if problem:
                    return problem
                continue
            pos += 2 + length

    def _scan(self, segment: bytes | bytearray, start: int) -> tuple[str | None, int]:
        frame = self.frame
        if frame is None:  # (the walk answers a scan before any frame header itself)
            return "the JPEG data has no frame header", start
        count = segment[0]
        ids = [segment[1 + 2 * i] for i in range(count)]
        selectors = [segment[2 + 2 * i] for i in range(count)]
        ss, se, approx = segment[1 + 2 * count : 4 + 2 * count]
        ah, al = approx >> 4, approx & 15
        if any(i not in frame.index for i in ids) or not self._valid_spectral(frame.progressive, count, ss, se):
            return "the JPEG data is damaged: invalid scan header", start
        rows = []
        for cid, sel in zip(ids, selectors, strict=True):
            c = frame.index[cid]
            dc, ac = sel >> 4, 4 + (sel & 15)
            needs_dc, needs_ac = ss == 0 and ah == 0, se > 0
            if (needs_dc and not self.tables.has(dc)) or (needs_ac and not self.tables.has(ac)):
                return f"the JPEG data is damaged: a scan uses an undefined Huffman table ({sel:#04x})", start
            rows.append([dc, ac, *frame.layout[c]])
            self.precision.setdefault(cid, [64] * 64)[ss : se + 1] = [al] * (se + 1 - ss)
        t = self.tables
        clean, ends, marker, restarts = unstuff(self.array, start, self.restart > 0)
        status, _ = walk_scan(
            clean, ends, np.array(rows, dtype=np.int64), frame.mcux, frame.mcuy, ss, se, ah,
            frame.progressive, self.restart, t.look, t.maxcode, t.valoffset, t.values, frame.nonzero,
        )  # fmt: skip
        if status == OUT_OF_DATA and restarts == BAD_RESTART:
            status = BAD_RESTART
        elif status == OUT_OF_DATA and marker < len(self.data):
            status = MARKER_TOO_EARLY
        return _describe(status, marker, len(self.data)), marker

    @staticmethod
    def _valid_spectral(progressive: bool, count: int, ss: int, se: int) -> bool:
        if not progressive:
            return ss == 0 and se == 63
        return se <= 63 and ss <= se and (se == 0 if ss == 0 else count == 1)

    def _missing_scans(self) -> str | None:
        """At the end of the image: did scans bring every coefficient of every component to full precision?

        A file cut between two scans is a valid JPEG with fewer scans; libjpeg decodes it without a
        word (a blurred or colourless image). Encoders always send the whole image, so such a file was cut.
        """
        if self.frame is None:
            return "the JPEG data has no frame header"
        done = [self.precision.get(cid, [64]) for cid in self.frame.index]
        if any(bits != 0 for coefficients in done for bits in coefficients):
            return "the JPEG file ends before all its scans (truncated; decoders return a partial image)"
        return None


def _describe(status: int, pos: int, n: int) -> str | None:
    if status == OUT_OF_DATA:
        return f"the JPEG data ends at byte {n:,} before the image is complete (truncated)"
    if status == MARKER_TOO_EARLY:
        return (
            f"the JPEG image data stops at byte {pos:,}, before the image is complete (the file was truncated "
            "or damaged; decoders fill the rest with grey)"
        )
    if status == BAD_CODE:
        return f"the JPEG image data is damaged (an invalid Huffman code near byte {pos:,})"
    if status == BAD_RESTART:
        return f"the JPEG image data is damaged (restart markers out of sequence near byte {pos:,})"
    return None


class _Frame:
    """Sampling factors and block layout of each component of a JPEG frame."""

    def __init__(self, segment: bytes | bytearray, progressive: bool) -> None:
        _, height, width, count = struct.unpack_from(">BHHB", segment)
        comps = [segment[6 + 3 * i : 9 + 3 * i] for i in range(count)]
        self.index = {c[0]: i for i, c in enumerate(comps)}
        self.progressive = progressive
        hmax = max(max(c[1] >> 4 for c in comps), 1)
        vmax = max(max(c[1] & 15 for c in comps), 1)
        self.mcux = _ceil_div(width, 8 * hmax)
        self.mcuy = _ceil_div(height, 8 * vmax)
        self.layout = []  # h, v, blocks wide, blocks high (as coded alone), padded row stride, offset
        offset = 0
        for c in comps:
            h, v = c[1] >> 4, c[1] & 15
            wide = _ceil_div(_ceil_div(width * h, hmax), 8)
            high = _ceil_div(_ceil_div(height * v, vmax), 8)
            stride = self.mcux * h
            self.layout.append([h, v, wide, high, stride, offset])
            offset += stride * self.mcuy * v
        self.nonzero = np.zeros(offset if progressive else 1, dtype=np.int64)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _HuffmanTables:
    """The 4 DC and 4 AC tables of a JPEG (index 0-3 DC, 4-7 AC) in the form the walk decodes with."""

    def __init__(self) -> None:
        self.look = np.zeros((8, 1 << LOOKAHEAD), dtype=np.int32)  # (length << 8) | symbol, 0: longer code
        self.maxcode = np.full((8, 18), -1, dtype=np.int64)
        self.valoffset = np.zeros((8, 18), dtype=np.int64)
        self.values = np.zeros((8, 256), dtype=np.int32)
        self.defined = np.zeros(8, dtype=bool)

    def has(self, t: int) -> bool:
        return 0 <= t < 8 and bool(self.defined[t])

    def define(self, segment: bytes | bytearray) -> str | None:
        pos = 0
        while pos < len(segment):
            kind, slot = segment[pos] >> 4, segment[pos] & 15
            counts = list(segment[pos + 1 : pos + 17])
            values = list(segment[pos + 17 : pos + 17 + sum(counts)])
            pos += 17 + sum(counts)
            if kind > 1 or slot > 3 or len(counts) < 16 or len(values) < sum(counts) or sum(counts) > 256:
                return "the JPEG data is damaged: an invalid Huffman table"
            if not self._build(4 * kind + slot, counts, values):
                return "the JPEG data is damaged: an invalid Huffman table"
        return None

    def _build(self, t: int, counts: list[int], values: list[int]) -> bool:
        """Canonical codes as libjpeg derives them (JPEG standard, annex C)."""
        self.look[t] = 0
        self.maxcode[t] = -1
        self.maxcode[t, 17] = 1 << 40
        self.values[t, : len(values)] = values
        code, p = 0, 0
        for length in range(1, 17):
            n = counts[length - 1]
            if n:
                self.valoffset[t, length] = p - code
                for symbol in values[p : p + n]:
                    if length <= LOOKAHEAD:
                        first = code << (LOOKAHEAD - length)
                        self.look[t, first : first + (1 << (LOOKAHEAD - length))] = (length << 8) | symbol
                    code += 1
                p += n
                self.maxcode[t, length] = code - 1
                if code > (1 << length):
                    return False
            code <<= 1
        self.defined[t] = True
        return True


# --------------------------------------------------------------------------------- the compiled walk

PADDING = 512
"""Zero bytes after a scan's data: more than one block can read, so a block that runs past the end of the
data reads zeros, and is then found to have done so."""


@njit(cache=True, nogil=True)
def unstuff(data, start, restarts):
    """A scan's Huffman-coded bytes from ``start``, with the stuffed zero bytes removed.

    Returns (bytes followed by ``PADDING`` zeros, end of each restart interval in those bytes, position
    of the marker that ends the scan (``len(data)`` when none does), OK or BAD_RESTART when a restart
    marker is out of sequence). Restart markers split intervals only when ``restarts`` is true.
    """
    n = data.shape[0]
    clean = np.zeros(n - start + PADDING, dtype=np.uint8)
    ends = []
    j, p, expected, status, marker = 0, start, 0, OK, n
    while p < n:
        b = data[p]
        if b != 0xFF:
            clean[j] = b
            j += 1
            p += 1
            continue
        q = p + 1
        while q < n and data[q] == 0xFF:  # fill bytes
            q += 1
        if q >= n:
            break
        code = data[q]
        if code == 0:  # a stuffed 0xFF data byte
            clean[j] = 0xFF
            j += 1
            p = q + 1
        elif restarts and 0xD0 <= code <= 0xD7:
            if code != 0xD0 + expected:
                status, marker = BAD_RESTART, p
                break
            ends.append(j)
            expected = (expected + 1) & 7
            p = q + 1
        else:
            marker = p
            break
    ends.append(j)
    return clean[: j + PADDING], np.array(ends, dtype=np.int64), marker, status


@njit(cache=True)
def _peek16(clean, bitpos):
    i = bitpos >> 3
    word = (np.int64(clean[i]) << 16) | (np.int64(clean[i + 1]) << 8) | np.int64(clean[i + 2])
    return (word >> (8 - (bitpos & 7))) & 0xFFFF


@njit(cache=True)
def _decode(clean, bitpos, t, look, maxcode, valoffset, values):
    """(next Huffman symbol of table t, bit position after it); the symbol is -1 for an invalid code."""
    word = _peek16(clean, bitpos)
    entry = look[t, word >> (16 - LOOKAHEAD)]
    if entry != 0:
        return entry & 255, bitpos + (entry >> 8)
    for length in range(LOOKAHEAD + 1, 17):
        code = word >> (16 - length)
        if code <= maxcode[t, length]:
            return values[t, code + valoffset[t, length]], bitpos + length
    return -1, bitpos


@njit(cache=True)
def _bits(clean, bitpos, k):
    """The k (<= 16) bits at bitpos as an integer."""
    return _peek16(clean, bitpos) >> (16 - k) if k else 0


@njit(cache=True, nogil=True)
def walk_scan(clean, ends, comps, mcux, mcuy, ss, se, ah, progressive, restart, look, maxcode, valoffset, values,
              nonzero):  # fmt: skip
    """Walk the blocks of one scan over its unstuffed bytes; (status, index of the MCU where it stopped).

    ``comps`` has a row per scan component: DC table, AC table, h, v, blocks wide, blocks high (when coded
    alone), padded row stride, offset into ``nonzero``: which coefficients of each block are nonzero so
    far (progressive refinement scans read a correction bit for each of them). A block that needs bits
    beyond its restart interval's data is what libjpeg reports as a premature end: OUT_OF_DATA.
    """
    ncomp = comps.shape[0]
    total = comps[0, 4] * comps[0, 5] if ncomp == 1 else mcux * mcuy
    segment, bitpos, limit, eobrun = 0, 0, ends[0] * 8, 0
    for m in range(total):
        if restart > 0 and m > 0 and m % restart == 0:
            segment += 1
            if segment >= ends.shape[0]:
                return OUT_OF_DATA, m
            bitpos, limit, eobrun = ends[segment - 1] * 8, ends[segment] * 8, 0
        for c in range(ncomp):
            h = 1 if ncomp == 1 else comps[c, 2]
            v = 1 if ncomp == 1 else comps[c, 3]
            for bv in range(v):
                for bh in range(h):
                    if ncomp == 1:
                        block = comps[0, 7] + (m // comps[0, 4]) * comps[0, 6] + m % comps[0, 4]
                    else:
                        row = (m // mcux) * comps[c, 3] + bv
                        block = comps[c, 7] + row * comps[c, 6] + (m % mcux) * comps[c, 2] + bh
                    if not progressive:
                        bitpos = _sequential_block(clean, bitpos, comps[c, 0], comps[c, 1], look, maxcode,
                                                   valoffset, values)  # fmt: skip
                    elif ss == 0:
                        bitpos = _dc_block(clean, bitpos, comps[c, 0], ah, look, maxcode, valoffset, values)
                    elif ah == 0:
                        bitpos, eobrun = _ac_first(clean, bitpos, comps[c, 1], block, ss, se, eobrun, look, maxcode,
                                                   valoffset, values, nonzero)  # fmt: skip
                    else:
                        bitpos, eobrun = _ac_refine(clean, bitpos, comps[c, 1], block, ss, se, eobrun, look,
                                                    maxcode, valoffset, values, nonzero)  # fmt: skip
                    if bitpos < 0:  # an invalid code: read past the data, or damaged data
                        return (OUT_OF_DATA if -bitpos - 1 + 16 > limit else BAD_CODE), m
                    if bitpos > limit:
                        return OUT_OF_DATA, m
    return OK, total


@njit(cache=True)
def _sequential_block(clean, bitpos, dc, ac, look, maxcode, valoffset, values):
    """Bit position after one baseline block; ``-p - 1`` for an invalid code at bit p (so in the block walks)."""
    s, bitpos = _decode(clean, bitpos, dc, look, maxcode, valoffset, values)
    if s < 0:
        return -bitpos - 1
    bitpos += s
    k = 1
    while k < 64:
        rs, bitpos = _decode(clean, bitpos, ac, look, maxcode, valoffset, values)
        if rs < 0:
            return -bitpos - 1
        r, s = rs >> 4, rs & 15
        if s != 0:
            k += r
            bitpos += s
        elif r != 15:
            break
        else:
            k += 15
        k += 1
    return bitpos


@njit(cache=True)
def _dc_block(clean, bitpos, dc, ah, look, maxcode, valoffset, values):
    if ah != 0:  # refinement: one bit
        return bitpos + 1
    s, bitpos = _decode(clean, bitpos, dc, look, maxcode, valoffset, values)
    return bitpos + s if s >= 0 else -bitpos - 1


@njit(cache=True)
def _ac_symbol(clean, bitpos, ac, look, maxcode, valoffset, values):
    """(run, size, bitpos) of the next AC symbol: a run of zero coefficients and the size of the next; size -1
    when the bits are no code of the table."""
    rs, bitpos = _decode(clean, bitpos, ac, look, maxcode, valoffset, values)
    if rs < 0:
        return 0, -1, bitpos
    return rs >> 4, rs & 15, bitpos


@njit(cache=True)
def _ac_first(clean, bitpos, ac, block, ss, se, eobrun, look, maxcode, valoffset, values, nonzero):
    if eobrun > 0:
        return bitpos, eobrun - 1
    k = ss
    while k <= se:
        r, s, bitpos = _ac_symbol(clean, bitpos, ac, look, maxcode, valoffset, values)
        if s < 0:
            return -bitpos - 1, eobrun
        if s != 0:
            k += r
            bitpos += s
            nonzero[block] |= np.int64(1) << min(k, 63)
        elif r == 15:
            k += 15
        else:
            eobrun = (np.int64(1) << r) + _bits(clean, bitpos, r)
            return bitpos + r, eobrun - 1
        k += 1
    return bitpos, eobrun


@njit(cache=True)
def _ac_refine(clean, bitpos, ac, block, ss, se, eobrun, look, maxcode, valoffset, values, nonzero):
    k = ss
    if eobrun == 0:
        while k <= se:
            r, s, bitpos = _ac_symbol(clean, bitpos, ac, look, maxcode, valoffset, values)
            if s < 0:
                return -bitpos - 1, eobrun
            if s != 0:
                if s != 1:
                    return -bitpos - 1, eobrun
                bitpos += 1
            elif r != 15:
                eobrun = (np.int64(1) << r) + _bits(clean, bitpos, r)
                bitpos += r
                break
            while k <= se:  # a correction bit for each nonzero coefficient, up to the r-th zero one
                if (nonzero[block] >> k) & 1:
                    bitpos += 1
                elif r == 0:
                    break
                else:
                    r -= 1
                k += 1
            if s != 0:
                nonzero[block] |= np.int64(1) << min(k, 63)
            k += 1
    if eobrun > 0:
        while k <= se:
            if (nonzero[block] >> k) & 1:
                bitpos += 1
            k += 1
        eobrun -= 1
    return bitpos, eobrun
