"""Pictures of a segmentation: mean colours, boundaries, noise, and the explain panel."""

from __future__ import annotations

import numpy as np

from gpuseg.segmentation.labels import overlay, to_rgb8

PICTURES: tuple[str, ...] = ("overlay", "mean", "boundaries", "noise")
"""The pictures `segment --save` can write, as ``<stem>.<name>.png``."""
NOISE_COLOUR = np.array([255, 0, 255], dtype=np.uint8)


def mean_color(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each cluster painted with its mean colour; noise in magenta."""
    rgb = to_rgb8(image).reshape(-1, 3).astype(np.float64)
    flat = labels.ravel()
    n = int(flat.max()) + 1 if flat.size else 0
    inside = flat >= 0
    counts = np.maximum(np.bincount(flat[inside], minlength=n), 1)
    means = np.stack([np.bincount(flat[inside], weights=rgb[inside, c], minlength=n) for c in range(3)], axis=1)
    out = np.empty_like(rgb, dtype=np.uint8)
    out[inside] = np.round(means / counts[:, None])[flat[inside]].astype(np.uint8)
    out[~inside] = NOISE_COLOUR
    return out.reshape(*labels.shape, 3)


def boundary_mask(labels: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def boundaries(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The image with cluster boundaries drawn in yellow."""
    out = to_rgb8(image).copy()
    out[boundary_mask(labels)] = (255, 220, 0)
    return out


def noise_map(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A dimmed grey copy of the image with the noise pixels in magenta."""
    grey = to_rgb8(image).mean(axis=2, keepdims=True) * 0.45
    out = np.repeat(grey, 3, axis=2).astype(np.uint8)
    out[labels < 0] = NOISE_COLOUR
    return out


def picture(name: str, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One of :data:`PICTURES` by name."""
    return {"overlay": overlay, "mean": mean_color, "boundaries": boundaries, "noise": noise_map}[name](image, labels)


def panel(tiles: list[tuple[np.ndarray, str]], columns: int = 2, width: int = 420) -> np.ndarray:
    """Tiles (RGB uint8 pictures) with a caption above each, in a grid of ``columns``."""
    import cv2

    rendered = []
    for tile, caption in tiles:
        h = max(1, round(tile.shape[0] * width / tile.shape[1]))
        resized = cv2.resize(tile, (width, h), interpolation=cv2.INTER_AREA)
        lines = caption.split("\n")
        bar = np.full((8 + 18 * len(lines), width, 3), 255, np.uint8)
        for i, line in enumerate(lines):
            cv2.putText(bar, line, (6, 20 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rendered.append(np.vstack([bar, resized]))
    rendered += [np.full((1, width, 3), 255, np.uint8)] * (-len(rendered) % columns)
    rows = []
    for i in range(0, len(rendered), columns):  # each row as tall as its tallest tile
        row = rendered[i : i + columns]
        height = max(t.shape[0] for t in row)
        rows.append(
            np.hstack([np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0)), constant_values=255) for t in row])
        )
    return np.vstack(rows)
