"""Pixels as samples: the feature rows gpuseg clusters (see the feature contract in the README)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gpuseg._core.arrays import Array, array_module
from gpuseg.params import AlphaMode, ColorSpace, check


@dataclass(frozen=True, eq=False)
class Features:
    """The samples of one clustering run, kept compact; :meth:`matrix` gives the (N, F) float64 rows.

    An image keeps its colors on the pixel grid: ``colors`` is ``(H, W, K)``, either float64 values or
    integer codes whose value is ``lut[code]`` (8- and 16-bit images), and ``mask`` says which pixels are
    samples. Plain feature arrays keep their rows in ``points``. ``image_rows`` is set when ``colors``
    stacks several images of that many rows each (see :func:`gpuseg.engines.run.dbscan_images`).
    """

    names: tuple[str, ...]
    points: Array | None = None
    colors: Array | None = None
    lut: Array | None = None
    mask: Array | None = None
    xy_scale: float | None = None
    image_rows: int | None = None

    @property
    def is_image(self) -> bool:
        return self.colors is not None

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image (of a stack of images, all their rows); a TypeError for plain feature rows."""
        if self.colors is None:
            raise TypeError("plain feature rows have no image shape")
        return int(self.colors.shape[0]), int(self.colors.shape[1])

    @property
    def pixels(self) -> Array:
        """The ``(H, W, C)`` colour codes of an image's features; a TypeError for plain feature rows."""
        if self.colors is None:
            raise TypeError("plain feature rows have no pixels")
        return self.colors

    @property
    def position_scale(self) -> float:
        """``xy_scale`` of features with position; a TypeError for colour alone."""
        if self.xy_scale is None:
            raise TypeError("features of colour alone have no position")
        return self.xy_scale

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of one image: of the image, or of each image of a stack (a TypeError for plain rows)."""
        h, w = self.shape
        return (self.image_rows or h, w)

    @property
    def n_samples(self) -> int:
        if self.points is not None:
            return self.points.shape[0]
        assert self.colors is not None
        return int(self.mask.sum()) if self.mask is not None else self.colors.shape[0] * self.colors.shape[1]

    @property
    def n_features(self) -> int:
        return len(self.names)

    def map_arrays(self, fn: Callable[[Array], Array]) -> Features:
        """The same features with ``fn`` applied to each array (e.g. ``cupy.asarray`` to move them to a GPU)."""
        arrays = {k: getattr(self, k) for k in ("points", "colors", "lut", "mask")}
        moved = {k: None if a is None else fn(a) for k, a in arrays.items()}
        return dataclasses.replace(self, **moved)  # type: ignore[arg-type]

    def matrix(self, index: Array | None = None) -> Array:
        """The ``(N, F)`` float64 matrix the engines cluster, exactly as the feature contract defines it; with
        ``index`` (sample numbers), only those rows, without building the rest."""
        if self.points is not None:
            return self.points if index is None else self.points[index]
        xp = array_module(self.colors)
        h, w = self.shape
        pixels = xp.arange(h * w, dtype=xp.int64)
        if self.mask is not None:
            pixels = pixels[self.mask.ravel()]
        if index is not None:
            pixels = pixels[index]
        codes = self.pixels.reshape(-1, self.pixels.shape[2])
        codes = codes if index is None and self.mask is None else codes[pixels]
        rows = self.lut[codes] if self.lut is not None else codes.astype("float64", copy=False)
        if self.xy_scale is None:
            return rows
        y, x = xp.divmod(pixels, w)
        if self.image_rows:  # a stack of images: positions restart at each
            y = y % self.image_rows
        return xp.column_stack([rows, x * self.xy_scale, y * self.xy_scale])


def pixel_features(
    image: np.ndarray,
    *,
    color: ColorSpace = "rgb",
    alpha: AlphaMode = "ignore",
    xy_scale: float | None = None,
) -> np.ndarray:
    """The feature rows of an image's pixels: exactly the ``(N, F)`` float64 matrix gpuseg clusters.

    Parameters
    ----------
    image : ndarray
        ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA, ``(H, W)`` grey (integer dtype) or ``(H, W, 1)`` image,
        uint8, uint16 or float. A 2-D float array is taken as ``(N, F)`` feature rows and returned as float64.
    color : {"rgb", "lab", "gray"}
        Colour columns: channels divided by the dtype's maximum (float images as they are); CIE L*a*b* divided
        by 100; or luma.
    alpha : {"ignore", "feature", "mask"}
        For RGBA images: drop alpha; keep it as a fourth colour column; or keep only pixels with alpha > 0 as
        samples (the others get label -1).
    xy_scale : float, optional
        When positive, two more columns ``x * xy_scale`` and ``y * xy_scale`` (column and row index); None or 0
        for colour only.

    Returns
    -------
    X : ndarray of shape (N, F), float64
        One row per sample pixel, in row-major order.

    Raises
    ------
    ValueError
        An unknown ``color`` or ``alpha``, a negative or non-finite ``xy_scale``, an unsupported shape or dtype, or
        NaN/inf values.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)  # one row of two pixels: red, blue
    >>> pixel_features(image, xy_scale=0.5)  # r, g, b, x * 0.5, y * 0.5
    array([[1. , 0. , 0. , 0. , 0. ],
           [0. , 0. , 1. , 0.5, 0. ]])
    """
    return build_features(image, color=color, alpha=alpha, xy_scale=xy_scale).matrix()


def build_features(
    image: np.ndarray,
    *,
    color: ColorSpace = "rgb",
    alpha: AlphaMode = "ignore",
    xy_scale: float | None = None,
) -> Features:
    """Like :func:`pixel_features`, but keeps an image on its grid (:class:`Features`)."""
    check("color", color)
    check("alpha", alpha)
    xy_scale = check("xy_scale", xy_scale)
    xp = array_module(image)  # an image already on a GPU (CuPy) gets its features built there
    image = xp.asarray(image)
    if image.ndim == 2 and image.dtype.kind == "f":
        return points_features(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or image.shape[0] * image.shape[1] == 0:
        raise ValueError(
            f"image of shape {image.shape} is not an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image with pixels"
        )
    if image.dtype.kind not in "uf" or image.dtype.itemsize > 8 or image.dtype in (np.uint32, np.uint64):
        raise ValueError(f"image dtype {image.dtype} is not supported; use uint8, uint16 or float")
    if image.dtype.kind == "f" and not bool(xp.isfinite(image).all()):
        raise ValueError("image has NaN or infinite values; replace them before clustering")

    channels = image.shape[2]
    mask = None
    extra = []
    extra_names: tuple[str, ...] = ()
    if channels == 4:
        alpha_plane = image[:, :, 3]
        if alpha == "mask":
            mask = alpha_plane > 0
        elif alpha == "feature":
            extra, extra_names = [alpha_plane], ("alpha",)
        image = image[:, :, :3]
    colors, names = _color_planes(image, color, xp)
    if extra and colors.dtype.kind == "f":  # Lab values: the alpha column is scaled to [0, 1] like them
        extra = [_unit(e, xp) for e in extra]
    colors = xp.concatenate([colors, *(e[:, :, None] for e in extra)], axis=2) if extra else colors
    names = names + extra_names
    lut = None
    if colors.dtype.kind == "u":
        top = np.iinfo(colors.dtype).max
        lut = xp.arange(top + 1, dtype=xp.float64) / top
    else:
        colors = colors.astype(xp.float64, copy=False)
    if xy_scale is not None:
        names = names + ("x", "y")
    return Features(
        names=names,
        colors=xp.ascontiguousarray(colors),
        lut=lut,
        mask=mask,
        xy_scale=xy_scale,
    )


def as_pixel_lattice(features: Features) -> Features | None:
    """The same samples kept on their pixel grid, when plain feature rows are the rows of
    :func:`pixel_features` with position: colour columns, then ``x * s`` and ``y * s`` of a full row-major
    grid (checked exactly, in O(N)); None otherwise. The grid engine then clusters them, with the same matrix.
    """
    X = features.points
    if X is None or X.shape[1] < 3 or X.shape[0] < 2:
        return None
    xs, ys = X[:, -2], X[:, -1]
    if xs[0] != 0 or ys[0] != 0:
        return None
    width = int(np.argmax(ys != 0)) if ys.any() else X.shape[0]  # the first row's length
    if width == 0 or X.shape[0] % width:
        return None
    scale = float(xs[1]) if width > 1 else float(ys[width])
    if not (np.isfinite(scale) and scale > 0):
        return None
    index = np.arange(X.shape[0], dtype=np.int64)
    y, x = np.divmod(index, width)
    if not (np.array_equal(xs, x * scale) and np.array_equal(ys, y * scale)):
        return None
    colors = np.ascontiguousarray(X[:, :-2]).reshape(X.shape[0] // width, width, X.shape[1] - 2)
    return Features(names=features.names, colors=colors, xy_scale=scale)


def _unit(plane, xp):
    """A plane as float64 in [0, 1]: integers divided by their dtype's maximum, floats as they are."""
    if plane.dtype.kind == "u":
        return plane.astype(xp.float64) / np.iinfo(plane.dtype).max
    return plane.astype(xp.float64, copy=False)


def points_features(points: np.ndarray) -> Features:
    """Plain ``(N, F)`` feature rows as :class:`Features`, checked for shape and finiteness."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[0] == 0 or points.shape[1] == 0:
        raise ValueError(f"X of shape {points.shape} is not an (N, F) array with N >= 1 and F >= 1")
    if points.dtype.kind not in "biuf":
        raise ValueError(f"X has dtype {points.dtype}; it must be numeric")
    points = np.ascontiguousarray(points, dtype=np.float64)
    if not np.isfinite(points).all():
        raise ValueError("X has NaN or infinite values; DBSCAN needs finite features")
    return Features(names=tuple(f"f{i}" for i in range(points.shape[1])), points=points)


def _color_planes(image, color: str, xp=np) -> tuple[np.ndarray, tuple[str, ...]]:
    """(H, W, K) colour planes (integer codes where the source is integer) and their column names.

    Lab and luma come from OpenCV, on the host: a GPU image makes that round trip for those two.
    """
    import cv2

    grey_source = image.shape[2] == 1
    if xp is not np and color in ("lab", "gray") and not grey_source:
        planes, names = _color_planes(image.get(), color)
        return xp.asarray(planes), names
    if color == "lab":
        rgb = np.repeat(image, 3, axis=2) if grey_source else image
        unit = rgb.astype(np.float32)
        if rgb.dtype.kind == "u":
            unit /= np.iinfo(rgb.dtype).max
        lab = cv2.cvtColor(unit, cv2.COLOR_RGB2LAB).astype(np.float64) / 100.0
        return lab, ("L", "a*", "b*")
    if grey_source:
        return image, ("gray",)
    if color == "gray":
        if image.dtype.kind == "f" and image.dtype != np.float32:
            image = image.astype(np.float32)
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None], ("gray",)
    return image, ("r", "g", "b")
