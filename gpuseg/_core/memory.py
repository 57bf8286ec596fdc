"""How much memory a run will take, predicted before it starts, so that a run that cannot fit is refused up front
rather than killed half-way (or thrashing) once the machine is out of memory."""

from __future__ import annotations

import os

from gpuseg.errors import MemoryLimitError

# Peak bytes per pixel above the image itself, measured on a 2-core, 24 GiB machine on 4 and 16 MP photos (peak
# RSS of segment() then save_outputs() with the overlay: 62, 122, 37 and 32 in the order below) and rounded up.
BYTES_PER_PIXEL = {
    # (colours are float64 values: Lab or a float image, position features?)
    (True, True): 72,
    (True, False): 140,  # colour only on float colours: merging distinct rows sorts them as bytes
    (False, True): 46,
    (False, False): 40,
}
BYTES_PER_EXTRA_PICTURE = 24
"""Each picture after the first is encoded at the same time as the others."""


def available_memory() -> int:
    """Bytes of memory the machine can still give (MemAvailable)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def predicted_memory(
    pixels: int,
    *,
    channels: int,
    itemsize: int,
    color: str,
    position: bool,
    decode: bool = False,
    pictures: int = 0,
    explain: bool = False,
) -> int:
    """Predicted peak bytes of segmenting an image of ``pixels`` pixels (and writing its outputs).

    ``decode`` counts decoding it from a file (the decoder's image and its RGB copy); ``pictures`` the pictures
    written; ``explain`` the second segmentation of the explain panel.
    """
    float_colors = color == "lab" or itemsize >= 4
    per_pixel = BYTES_PER_PIXEL[(float_colors, position)]
    if explain:
        per_pixel += BYTES_PER_PIXEL[(float_colors, not position)]
    per_pixel += BYTES_PER_EXTRA_PICTURE * max(pictures - 1, 0)
    image = channels * itemsize
    per_pixel += image * (3 if decode else 1)
    return int(pixels * per_pixel)


def check_memory(need: int, what: str, max_memory: int | None = None, hint: str = "") -> None:
    """Raise :class:`MemoryLimitError` when ``need`` bytes exceed ``max_memory`` (default: the memory available).

    ``what`` says what needs it (the message starts with it); ``hint`` is another way to need less.
    """
    have = available_memory() if max_memory is None else max_memory
    if need > have:
        limit = "available" if max_memory is None else "the limit set"
        raise MemoryLimitError(
            f"{what} needs about {_size(need)} and {_size(have)} is {limit}; use a smaller image{hint}, or, if the "
            f"machine can give more (swap), max_memory={need}"
        )


def _size(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"
