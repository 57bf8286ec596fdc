"""Images per second of ``gpuseg.dbscan_images`` (a batch clustered in one pass) against one call per image.

    PYTHONPATH=. python bench/batch_images.py OUT_DIR [--images 64] [--megapixels 0.25] [--repeat 5]

Each run clusters the same images both ways on each device the machine has (CPU; GPU where CuPy finds one),
after a warm-up, and keeps the median of the repeats; the labels of both ways must be identical. Images are
Grace Hopper's portrait (matplotlib's sample data) cropped to size at varying places, so that no two are
alike. Writes OUT_DIR/batch_images.json. bench/gpu_check.py runs the same measurement on a lent GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

OPTIONS = dict(eps=0.0523, min_samples=20, xy_scale=0.01)  # colour + position, stencil radius 5


def crops(n_images: int, megapixels: float) -> list[np.ndarray]:
    from gpuseg.benchmarks.suite import photo_image

    photo = photo_image()
    side = int(round((megapixels * 1e6) ** 0.5))
    h, w = min(side, photo.shape[0]), min(side, photo.shape[1])
    rng = np.random.default_rng(0)
    ys = rng.integers(0, photo.shape[0] - h + 1, n_images)
    xs = rng.integers(0, photo.shape[1] - w + 1, n_images)
    return [np.ascontiguousarray(photo[y : y + h, x : x + w]) for y, x in zip(ys, xs, strict=True)]


def measure(images: list[np.ndarray], devices, repeats: int, sync=lambda: None) -> dict:
    """Median seconds and images per second, batched and one by one, on each device; labels compared."""
    from gpuseg.scale.stack import dbscan_images

    row = {"images": len(images), "megapixels_each": images[0].shape[0] * images[0].shape[1] / 1e6}
    for device in devices:
        ways = {
            "one_by_one": lambda device=device: [dbscan_images([i], **OPTIONS, device=device)[0] for i in images],
            "batched": lambda device=device: dbscan_images(images, **OPTIONS, device=device),
        }
        labels = {}
        for name, run in ways.items():
            run()  # warm-up: compiled kernels loaded, device initialised
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                labels[name] = run()
                sync()
                times.append(time.perf_counter() - start)
            median = float(np.median(times))
            row[f"{device}_{name}_s"] = median
            row[f"{device}_{name}_images_per_s"] = len(images) / median
        row[f"{device}_identical"] = all(
            np.array_equal(a, b) for a, b in zip(labels["one_by_one"], labels["batched"], strict=True)
        )
    return row


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gpuseg._core.device import gpu_status
    from gpuseg.benchmarks.suite import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--megapixels", type=float, default=0.25)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    devices = ["cpu", "gpu"] if gpu_status().usable else ["cpu"]
    row = measure(crops(args.images, args.megapixels), devices, args.repeat)
    document = {"machine": machine(), "options": OPTIONS, "repeats": args.repeat, "result": row}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "batch_images.json").write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(row, indent=2))
    return 0 if all(v for k, v in row.items() if k.endswith("identical")) else 1


if __name__ == "__main__":
    sys.exit(main())
