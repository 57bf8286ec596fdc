"""Reading images with OpenCV and writing outputs atomically."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gpuseg.errors import GpusegError, ImageError, OutputExistsError

DEFAULT_MAX_PIXELS = 2**28
"""Largest image (width * height) :func:`load_image` accepts unless told otherwise."""


def load_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file with OpenCV, in RGB(A) channel order and its own dtype.

    Parameters
    ----------
    path : str or path-like
        Any file OpenCV decodes: PNG, JPEG, TIFF, BMP, WebP, ... 8- or 16-bit, grey, RGB or RGBA.
    max_pixels : int, optional
        Refuse images with more pixels than this (default ``2**28``).

    Returns
    -------
    image : ndarray
        ``(H, W)`` for grey images, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA, dtype uint8, uint16 or float32.
        JPEG EXIF orientation is applied.

    Raises
    ------
    ImageError
        The file is missing, a directory, not an image, truncated, empty or larger than ``max_pixels``.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    return decode_image(data, name=str(path), max_pixels=max_pixels)


def decode_image(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image held in memory; the same rules and result as :func:`load_image`."""
    import cv2

    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if len(data) == 0:
        raise ImageError(f"{name}: the file is empty")
    kind = _sniff(data)
    _check_complete(data, kind, name)
    size = _header_size(data, kind)
    if size is not None:
        _check_pixels(size[0] * size[1], max_pixels, name)
    # IMREAD_UNCHANGED keeps alpha and 16 bits but ignores EXIF orientation; JPEG has no alpha, so it is
    # decoded with flags that keep depth and colour and apply the orientation.
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR if kind == "jpeg" else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise ImageError(f"{name}: OpenCV could not decode it ({str(exc).strip().splitlines()[-1]})") from exc
    if image is None:
        raise ImageError(f"{name}: not an image OpenCV can read (or a damaged one)")
    if image.size == 0:
        raise ImageError(f"{name}: the image has no pixels")
    _check_pixels(image.shape[0] * image.shape[1], max_pixels, name)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        code = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}.get(image.shape[2])
        if code is None:
            raise ImageError(f"{name}: {image.shape[2]} channels; gpuseg reads grey, RGB and RGBA images")
        image = cv2.cvtColor(image, code)
    return np.ascontiguousarray(image)


def _check_pixels(n: int, max_pixels: int, name: str) -> None:
    if n > max_pixels:
        raise ImageError(
            f"{name}: {n:,} pixels is more than the limit of {max_pixels:,}; raise it with max_pixels "
            "(--max-pixels on the command line) if the machine has the memory"
        )


def _sniff(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return "other"


def _check_complete(data: bytes, kind: str, name: str) -> None:
    # Decoders fill a truncated PNG or JPEG with grey and only warn: refuse it instead of clustering filler.
    if kind == "png" and b"IEND" not in data[-16:]:
        raise ImageError(f"{name}: the PNG file is truncated (no IEND chunk at its end)")
    if kind == "jpeg" and b"\xff\xd9" not in data[-64:]:
        raise ImageError(f"{name}: the JPEG file is truncated (no end-of-image marker)")


def _header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(height, width) read from the header without decoding, where cheap, to refuse huge images early."""
    if kind == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if kind == "jpeg":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            length = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return height, width
            i += 2 + length
    return None


# ---------------------------------------------------------------------------------------------- writing


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None], *, overwrite: bool = False) -> Path:
    """Write a file through ``write(fileobj)`` into a temporary file beside it, then rename it into place.

    A failure at any point leaves no file at ``path`` (and no temporary file behind).
    """
    path = Path(path)
    return commit(stage(path, write, overwrite=overwrite), path)


def stage(path: Path, write: Callable[[Any], None], *, overwrite: bool = False) -> Path:
    """Write the temporary file of :func:`atomic_write` and return its path; :func:`commit` renames it.

    On failure nothing is left behind.
    """
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; pass --overwrite (overwrite=True) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def commit(tmp: Path, path: Path) -> Path:
    """Rename a staged temporary file into place (atomic on one file system)."""
    os.replace(tmp, path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def npy_writer(array: np.ndarray) -> Callable[[Any], None]:
    return lambda f: np.save(f, array, allow_pickle=False)


def png_writer(image: np.ndarray) -> Callable[[Any], None]:
    """A writer of an RGB(A), grey or uint16 image as PNG."""
    import cv2

    if image.ndim == 3:
        image = cv2.cvtColor(image, {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}[image.shape[2]])
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise GpusegError(f"OpenCV could not encode a {image.dtype} image of shape {image.shape} as PNG")
    return lambda f: f.write(buf.tobytes())


def json_writer(document: Any) -> Callable[[Any], None]:
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    return lambda f: f.write(text.encode())


def save_npy(path: str | os.PathLike[str], array: np.ndarray, *, overwrite: bool = False) -> Path:
    """Save an array as ``.npy``, atomically."""
    return atomic_write(path, npy_writer(array), overwrite=overwrite)


def save_png(path: str | os.PathLike[str], image: np.ndarray, *, overwrite: bool = False) -> Path:
    """Save an RGB(A), grey or uint16 image as PNG, atomically."""
    return atomic_write(path, png_writer(image), overwrite=overwrite)


def save_json(path: str | os.PathLike[str], document: Any, *, overwrite: bool = False) -> Path:
    """Save a JSON document, atomically."""
    return atomic_write(path, json_writer(document), overwrite=overwrite)
