"""dbscan_images(): many images clustered together, one pass (one kernel launch per stage on a GPU) for
each group of images of the same size, with the labels of each image as if it had been clustered alone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpuseg.engines import ENGINES
from gpuseg.engines.base import Job
from gpuseg.engines.grid import large_stencil
from gpuseg.engines.run import check_parameters, cluster_features
from gpuseg.features import Features, build_features
from gpuseg.params import AlphaMode, ColorSpace


def dbscan_images(
    images: Sequence[np.ndarray],
    *,
    eps: float,
    min_samples: int,
    color: ColorSpace = "rgb",
    alpha: AlphaMode = "ignore",
    xy_scale: float | None = 0.01,
    device: str = "auto",
) -> list[np.ndarray]:
    """DBSCAN label maps of many images, each identical to clustering that image's
    :func:`gpuseg.pixel_features` rows alone with scikit-learn.

    Images of the same shape and dtype are stacked and clustered in one pass of the grid engine: every
    stage keeps a pixel's neighbourhood inside its own image, so on a GPU a batch of small images costs one
    kernel launch per stage rather than one per image. Color-only features (``xy_scale`` None or 0), and
    stencils large enough for the cell engine, are clustered image by image.

    Parameters
    ----------
    images : sequence of ndarray
        Images as :func:`gpuseg.pixel_features` takes them (RGB(A) order), in any mix of shapes.
    eps, min_samples
        DBSCAN's parameters, as in :func:`gpuseg.dbscan`.
    color, alpha, xy_scale
        The features, as in :func:`gpuseg.pixel_features` (here with position by default).
    device : {"auto", "cpu", "gpu"}
        As in :func:`gpuseg.dbscan`.

    Returns
    -------
    labels : list of ndarray of shape (H, W), int64
        One label map per image, in the order given: -1 for noise (and for pixels masked out by
        ``alpha="mask"``), clusters 0, 1, ... of that image in order of their smallest core pixel.

    Raises
    ------
    ValueError
        An empty ``images``, an image that :func:`gpuseg.pixel_features` refuses (named by its index), or a
        bad parameter.
    DeviceError
        ``device="gpu"`` and no usable CUDA device.

    Examples
    --------
    >>> from gpuseg.data import shapes_image
    >>> from gpuseg.engines.run import dbscan
    >>> from gpuseg.features import pixel_features
    >>> frames = [shapes_image(30, 40, seed=k)[0] for k in range(3)]
    >>> maps = dbscan_images(frames, eps=0.055, min_samples=20, device="cpu")
    >>> [m.shape for m in maps]
    [(30, 40), (30, 40), (30, 40)]
    >>> alone = dbscan(pixel_features(frames[1], xy_scale=0.01), eps=0.055, min_samples=20, device="cpu")
    >>> bool((maps[1].ravel() == alone).all())  # as if clustered alone
    True
    """
    eps, min_samples = check_parameters(eps, min_samples)
    if isinstance(images, np.ndarray) and images.ndim in (2, 3) or not len(images):
        raise ValueError("images must be a non-empty sequence of images; for one image use gpuseg.segment")
    features = []
    for i, image in enumerate(images):
        try:
            features.append(build_features(image, color=color, alpha=alpha, xy_scale=xy_scale))
        except ValueError as exc:
            raise ValueError(f"images[{i}]: {exc}") from exc
        if not features[-1].is_image:
            raise ValueError(f"images[{i}] of shape {np.shape(image)} is not an image; use gpuseg.dbscan for rows")
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(features):
        groups.setdefault((f.shape, f.pixels.shape[2], f.pixels.dtype, f.mask is not None), []).append(i)
    labels: list[np.ndarray | None] = [None] * len(features)
    for members in groups.values():
        maps = _cluster_group([features[i] for i in members], eps, min_samples, device)
        for i, label_map in zip(members, maps, strict=True):
            labels[i] = label_map
    return labels  # type: ignore[return-value]


def _cluster_group(group: list[Features], eps: float, min_samples: int, device: str) -> list[np.ndarray]:
    """Label maps of images of one shape: stacked and clustered in one grid run where the grid engine
    takes them, else one run each."""

    first = group[0]
    h, w = first.shape
    probe = Job(first, eps, min_samples, None, None)  # type: ignore[arg-type]
    if len(group) == 1 or first.xy_scale is None or ENGINES["grid"].why_not_input(probe) or large_stencil(probe):
        return [_label_map(cluster_features(f, eps=eps, min_samples=min_samples, device=device).labels, f)
                for f in group]  # fmt: skip
    stack = stack_images(group)
    flat = cluster_features(stack, eps=eps, min_samples=min_samples, device=device, engine="grid").labels
    full = _label_map(flat, stack).reshape(len(group), h, w)
    return [renumbered(full[k]) for k in range(len(group))]


def stack_images(group: list[Features]) -> Features:
    """The features of same-sized images stacked row-wise, each image's positions starting at 0."""
    first = group[0]
    mask = None if first.mask is None else np.concatenate([np.asarray(f.mask) for f in group])
    return Features(
        names=first.names,
        colors=np.ascontiguousarray(np.concatenate([np.asarray(f.colors) for f in group])),
        lut=first.lut,
        mask=mask,
        xy_scale=first.xy_scale,
        image_rows=first.shape[0],
    )


def _label_map(labels: np.ndarray, features: Features) -> np.ndarray:
    """(H, W) labels from the labels of the samples; -1 where a pixel is not a sample."""
    if features.mask is None:
        return labels.reshape(features.shape)
    full = np.full(features.shape, -1, dtype=np.int64)
    full[np.asarray(features.mask)] = labels
    return full


def renumbered(label_map: np.ndarray) -> np.ndarray:
    """One image's part of a stack's labels, numbered from 0: the stack numbers clusters by their smallest
    core pixel, and an image's pixels are consecutive in the stack, so its clusters are consecutive
    numbers; subtracting the first keeps their order."""
    clustered = label_map >= 0
    if not clustered.any():
        return label_map
    return np.where(clustered, label_map - label_map[clustered].min(), -1)
