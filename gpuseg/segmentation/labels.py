"""Label maps: canonical numbering, the PNG encodings of the outputs, and cluster colours."""

from __future__ import annotations

import numpy as np


def check_png_labels(labels: np.ndarray) -> None:
    """Raise ValueError when the clusters do not fit in a 16-bit label PNG (more than 65534)."""
    if labels.size and labels.max() >= 65535:
        raise ValueError(
            f"{int(labels.max()) + 1} clusters do not fit in a 16-bit label PNG; use a larger eps or "
            "min_samples, or the labels from the API (gpuseg.segment(...).labels)"
        )


def labels_to_png(labels: np.ndarray) -> np.ndarray:
    """uint16 image of a label map: 0 is noise, cluster k is k + 1.

    Raises
    ------
    ValueError
        More than 65534 clusters do not fit in 16 bits.
    """
    check_png_labels(labels)
    return (labels + 1).astype(np.uint16)


def cluster_colors(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) uint8 colours, distinct and bright, the same for the same n (golden-ratio hues)."""
    import cv2

    if n == 0:  # zero clusters is a valid result (every sample noise)
        return np.zeros((0, 3), dtype=np.uint8)
    hues = (np.arange(n) * 0.618033988749895 + 0.1 * seed) % 1.0
    hsv = np.stack([hues * 180, np.full(n, 200), np.where(np.arange(n) % 2, 255, 190)], axis=1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]


def overlay(image: np.ndarray, labels: np.ndarray, *, dim: float = 0.35, alpha: float = 0.65) -> np.ndarray:
    """RGB uint8 picture: a distinct colour per cluster blended over a dimmed copy of the image, noise black.

    Computed in 16-bit integers with a palette lookup (a 24 MP picture in about a second on one core).
    """
    n = max(int(labels.max()) + 1, 0) if labels.size else 0
    palette = np.zeros((n + 1, 3), dtype=np.uint16)  # row 0 is noise
    palette[1:] = np.round(cluster_colors(n).astype(np.float64) * alpha).astype(np.uint16)
    keep = np.uint16(round(256 * dim * (1 - alpha)))
    out = ((to_rgb8(image).astype(np.uint16) * keep) >> 8) + palette[labels + 1]
    out[labels < 0] = 0
    return out.astype(np.uint8)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Any gpuseg image (grey/RGB/RGBA, uint8/uint16/float) as RGB uint8 for pictures."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    img = img[:, :, :3]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img)
    if img.dtype.kind == "u":
        return (img.astype(np.float64) / np.iinfo(img.dtype).max * 255 + 0.5).astype(np.uint8)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
