"""Images read a window at a time: tiled TIFF (through tifffile's Zarr store), Zarr and OME-Zarr (the first
level of a multiscale image); other formats are read whole (OpenCV) and then cut into windows.

A :class:`LazyImage` is small and pickles (a path and how to index it), so that Dask workers open the file
themselves and read only their windows. Windows come out as ``(h, w)`` or ``(h, w, C)`` arrays in RGB(A)
order, like :func:`gpuseg.load_image`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpuseg.errors import ImageError

TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".ome.tif", ".ome.tiff")
ZARR_SUFFIXES = (".zarr", ".ome.zarr")


@dataclass(frozen=True)
class LazyImage:
    """An image of ``height`` x ``width`` pixels with ``channels`` channels (1 for grey) read window by window.

    ``kind`` is "tiff", "zarr" or "array" (an image held in memory: a plain format read whole); ``axes`` names
    the stored array's axes (``Y``, ``X``, ``C`` for channels, others of length 1), ``level`` the array inside
    a Zarr group.
    """

    path: str | None
    kind: str
    height: int
    width: int
    channels: int
    dtype: str
    axes: str
    level: str | None = None
    array: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width) if self.channels == 1 and "C" not in self.axes else self.image_shape

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.height, self.width, self.channels

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels of rows [y0, y1) and columns [x0, x1): ``(h, w)`` for a grey image, else ``(h, w, C)``."""
        if self.array is not None:  # kind "array"
            return self.array[y0:y1, x0:x1]
        stored = _open_array(self.path, self.kind, self.level)
        index = tuple(slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X" else slice(None) if a == "C" else 0
                      for a in self.axes)  # fmt: skip
        block = np.asarray(stored[index])
        kept = [a for a in self.axes if a in "YXC"]
        if "C" in kept:
            block = np.moveaxis(block, kept.index("C"), -1)
            return block[:, :, 0] if block.shape[2] == 1 else block
        return block


def is_lazy_path(path: str | os.PathLike[str]) -> bool:
    """Can this file be read a window at a time (a TIFF or a Zarr)?"""
    name = str(path).lower().rstrip("/")
    return name.endswith(TIFF_SUFFIXES) or name.endswith(ZARR_SUFFIXES)


def open_lazy(image_or_path, *, max_pixels: int | None = None) -> LazyImage:
    """A :class:`LazyImage` of an array, a tiled TIFF, a Zarr array or group (OME-Zarr: its first level), or
    any other image file (read whole).

    Raises
    ------
    ImageError
        The file is missing or unreadable, or a TIFF or Zarr that is not a 2-D grey or 3-D colour image.
    """
    if not isinstance(image_or_path, (str, os.PathLike)):
        array = np.asarray(image_or_path)
        return _of_array(array, None)
    path = Path(image_or_path)
    if not path.exists():
        raise ImageError(f"{path}: no such file or folder")
    name = str(path).lower().rstrip("/")
    if name.endswith(ZARR_SUFFIXES) or (path.is_dir() and looks_like_zarr(path)):
        return _of_zarr(path)
    if name.endswith(TIFF_SUFFIXES):
        return _of_tiff(path)
    from gpuseg.io.read import DEFAULT_MAX_PIXELS, load_image

    return _of_array(load_image(path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS), str(path))


def looks_like_zarr(path: Path) -> bool:
    return any((path / marker).exists() for marker in ("zarr.json", ".zarray", ".zgroup"))


def _of_array(array: np.ndarray, path: str | None) -> LazyImage:
    if array.ndim == 2:
        axes = "YX"
    elif array.ndim == 3 and array.shape[2] in (1, 3, 4):
        axes = "YXC"
    else:
        raise ValueError(f"image of shape {array.shape} is not an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image")
    channels = array.shape[2] if array.ndim == 3 else 1
    return LazyImage(path, "array", array.shape[0], array.shape[1], channels, array.dtype.str, axes, array=array)


def _of_tiff(path: Path) -> LazyImage:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = series.axes.upper().replace("S", "C"), series.shape
    except Exception as exc:
        raise ImageError(f"{path}: not a readable TIFF ({exc})") from None
    stored = _open_array(str(path), "tiff", None)
    return _described(path, "tiff", axes, tuple(shape), stored.dtype, None)


def _of_zarr(path: Path) -> LazyImage:
    import zarr

    try:
        node: Any = zarr.open(str(path), mode="r")  # its attributes are JSON, checked as they are read
    except Exception as exc:
        raise ImageError(f"{path}: not a readable Zarr ({exc})") from None
    level, axes = None, None
    array: Any
    if isinstance(node, zarr.Group):
        attrs: Any = node.attrs  # JSON, checked as it is read
        multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        if multiscales:
            first = multiscales[0]
            level = first["datasets"][0]["path"]
            names = [a["name"] if isinstance(a, dict) else a for a in first.get("axes", [])]
            axes = "".join({"c": "C", "y": "Y", "x": "X"}.get(n.lower(), "T") for n in names) or None
        else:
            keys = sorted(node.array_keys())
            if not keys:
                raise ImageError(f"{path}: a Zarr group without arrays or OME-Zarr multiscales; not an image")
            level = keys[0]
        array = node[level]
    else:
        array = node
    shape = tuple(array.shape)
    if axes is None:
        axes = _guess_axes(shape, path)
    return _described(path, "zarr", axes, shape, array.dtype, level)


def _guess_axes(shape: tuple[int, ...], path: Path) -> str:
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3 and shape[2] in (1, 3, 4):
        return "YXC"
    if len(shape) == 3 and shape[0] in (1, 3, 4):
        return "CYX"
    raise ImageError(
        f"{path}: a Zarr array of shape {shape} is not an image: give (H, W), (H, W, C) or (C, H, W) with "
        "C = 1, 3 or 4 (OME-Zarr: axes named in its multiscales metadata)"
    )


def _described(path: Path, kind: str, axes: str, shape: tuple[int, ...], dtype, level) -> LazyImage:
    if len(axes) != len(shape) or "Y" not in axes or "X" not in axes:
        raise ImageError(f"{path}: axes {axes!r} of shape {shape} have no rows and columns; not an image")
    sizes = dict(zip(axes, shape, strict=True))
    others = [a for a, n in zip(axes, shape, strict=True) if a not in "YXC" and n != 1]
    channels = sizes.get("C", 1)
    if others or channels not in (1, 3, 4) or sizes["Y"] == 0 or sizes["X"] == 0:
        raise ImageError(
            f"{path}: an array of shape {shape} (axes {axes}) is not a 2-D grey or 3-D colour image with 1, 3 or 4 "
            "channels; other axes must have length 1"
        )
    dtype = np.dtype(dtype)
    if dtype.kind not in "uf" or dtype in (np.uint32, np.uint64) or dtype.itemsize > 8:
        raise ImageError(f"{path}: pixels of dtype {dtype} are not supported; use uint8, uint16 or float")
    return LazyImage(str(path), kind, sizes["Y"], sizes["X"], channels, dtype.str, axes, level)


@functools.lru_cache(maxsize=8)
def _open_array(path: str, kind: str, level: str | None):
    """The stored array (opened once per process and kept: workers read many windows of one file)."""
    import zarr

    if kind == "tiff":
        import tifffile

        node: Any = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
        if isinstance(node, zarr.Group):  # a pyramid: its full-resolution level
            node = node[sorted(node.array_keys())[0]]
        return node
    opened: Any = zarr.open(path, mode="r")
    return opened[level] if level is not None else opened
