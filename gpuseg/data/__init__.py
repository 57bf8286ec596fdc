"""Images made in code, for the examples, the tests and the benchmarks (nothing is downloaded)."""

from __future__ import annotations

import numpy as np


def shapes_image(
    height: int = 240, width: int = 320, *, seed: int = 0, noise: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 scene of flat-ish shapes over a gradient, with its true region map.

    Each shape has its own colour, a gentle shading and Gaussian noise of ``noise`` levels, so regions are
    clear to the eye but not single colours.

    Returns
    -------
    image : ndarray (H, W, 3) uint8
    truth : ndarray (H, W) int32, 0 for the background, 1.. for the shapes
    """
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.empty((height, width, 3), dtype=np.float64)
    image[...] = np.array([40.0, 60.0, 110.0]) + (yy / height)[..., None] * np.array([20.0, 30.0, 40.0])
    truth = np.zeros((height, width), dtype=np.int32)
    palette = np.array(
        [[220, 60, 50], [250, 200, 40], [60, 170, 80], [240, 240, 230], [150, 80, 200], [30, 30, 30], [240, 130, 180]]
    )
    s = min(height, width)
    for k, color in enumerate(palette, start=1):
        layer = np.zeros((height, width), dtype=np.uint8)
        cx, cy = rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height
        size = rng.uniform(0.10, 0.22) * s
        if k % 3 == 0:
            cv2.rectangle(layer, (int(cx - size), int(cy - size * 0.6)), (int(cx + size), int(cy + size * 0.6)), 1, -1)
        elif k % 3 == 1:
            cv2.ellipse(layer, (int(cx), int(cy)), (int(size), int(size * 0.7)), rng.uniform(0, 180), 0, 360, 1, -1)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, 5))
            pts = np.stack([cx + size * np.cos(angles), cy + size * np.sin(angles)], axis=1).astype(np.int32)
            cv2.fillPoly(layer, [pts], 1)
        inside = layer.astype(bool)
        shade = 1.0 - 0.15 * (yy - cy) / (2 * size)
        image[inside] = color[None, :] * np.clip(shade, 0.85, 1.15)[inside][:, None]
        truth[inside] = k
    image += rng.normal(0.0, noise, image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), truth


def logo_image(size: int = 500) -> np.ndarray:
    """An RGBA uint8 logo: flat colours with anti-aliased edges on a transparent background.

    Most pixels share a handful of exact colours: the case where scikit-learn's neighbourhoods explode.
    """
    import cv2

    bgra = np.zeros((size, size, 4), dtype=np.uint8)
    c = size // 2
    cv2.circle(bgra, (c, c), int(size * 0.42), (200, 120, 30, 255), -1, cv2.LINE_AA)
    cv2.circle(bgra, (c, c), int(size * 0.30), (255, 255, 255, 255), -1, cv2.LINE_AA)
    cv2.rectangle(
        bgra,
        (int(size * 0.3), int(size * 0.44)),
        (int(size * 0.7), int(size * 0.56)),
        (40, 40, 220, 255),
        -1,
        cv2.LINE_AA,
    )
    cv2.putText(
        bgra,
        "gpuseg",
        (int(size * 0.22), int(size * 0.9)),
        cv2.FONT_HERSHEY_SIMPLEX,
        size / 320,
        (20, 140, 20, 255),
        max(1, size // 100),
        cv2.LINE_AA,
    )
    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)


def tiled(image: np.ndarray, megapixels: float) -> np.ndarray:
    """A larger image of about ``megapixels`` made by mirrored tiling of ``image`` (no seams)."""
    h, w = image.shape[:2]
    scale = np.sqrt(megapixels * 1e6 / (h * w))
    reps_y, reps_x = int(np.ceil(scale)), int(np.ceil(scale))
    rows = [
        np.concatenate([image if (i + j) % 2 == 0 else image[:, ::-1] for j in range(reps_x)], axis=1)
        for i in range(reps_y)
    ]
    rows = [r if i % 2 == 0 else r[::-1] for i, r in enumerate(rows)]
    big = np.concatenate(rows, axis=0)
    return np.ascontiguousarray(big[: int(h * scale), : int(w * scale)])
