"""gpuseg beside what users pick instead: scikit-image's SLIC and Felzenszwalb, on generated scenes with a
known ground truth, in the same run: time and adjusted Rand index side by side.

    PYTHONPATH=. python bench/segmenters.py OUT_DIR [--sizes 0.25 1] [--noise 4 12] [--scenes 3] [--repeat 3]

Scenes are ``gpuseg.data.shapes_image`` (seven shapes over a gradient) at each size and level of
Gaussian noise (4 and 12 grey levels), with seeds 0..scenes-1. Every method runs with settings fixed in
advance (not tuned per scene, never told the number of regions): gpuseg's defaults with ``noise="fill"``
(also with ``min_region=50``, and with ``eps="auto"`` for 10% noise) on the CPU, SLIC with 100 segments
and compactness 10, Felzenszwalb with scale 100, sigma 0.5 and min_size 50. Times are the median of
``repeat`` runs after a warm-up; the ARI is the median over the scenes. Writes OUT_DIR/segmenters.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def methods() -> dict:
    """Each method's name: (the call, as written in the results, and the call itself)."""
    from skimage.segmentation import felzenszwalb, slic

    import gpuseg

    return {
        "gpuseg, noise fill": (
            "gpuseg.segment(image, noise='fill', device='cpu')",
            lambda image: gpuseg.segment(image, noise="fill", device="cpu").labels,
        ),
        "gpuseg, noise fill, min_region 50": (
            "gpuseg.segment(image, noise='fill', min_region=50, device='cpu')",
            lambda image: gpuseg.segment(image, noise="fill", min_region=50, device="cpu").labels,
        ),
        "gpuseg, eps auto, noise fill": (
            "gpuseg.segment(image, eps='auto', noise='fill', device='cpu')",
            lambda image: gpuseg.segment(image, eps="auto", noise="fill", device="cpu").labels,
        ),
        "skimage SLIC": (
            "slic(image, n_segments=100, compactness=10, start_label=0)",
            lambda image: slic(image, n_segments=100, compactness=10, start_label=0),
        ),
        "skimage felzenszwalb": (
            "felzenszwalb(image, scale=100, sigma=0.5, min_size=50)",
            lambda image: felzenszwalb(image, scale=100, sigma=0.5, min_size=50),
        ),
    }


def measure(sizes: list[float], noise_levels: list[float], scenes: int, repeats: int) -> list[dict]:
    from gpuseg.data import shapes_image
    from gpuseg.segmentation.quality import quality

    rows = []
    for megapixels, noise in ((m, n) for m in sizes for n in noise_levels):
        height = int(round((megapixels * 1e6 * 3 / 4) ** 0.5))
        width = int(round(height * 4 / 3))
        for name, (call, run) in methods().items():
            times, scores, regions = [], [], []
            for seed in range(scenes):
                image, truth = shapes_image(height, width, seed=seed, noise=noise)
                run(image)  # warm-up: compiled kernels loaded
                seconds = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    labels = run(image)
                    seconds.append(time.perf_counter() - start)
                times.append(float(np.median(seconds)))
                scores.append(quality(labels, truth)["adjusted_rand_index"])
                regions.append(int(np.unique(labels).size))
            rows.append(
                {
                    "method": name,
                    "call": call,
                    "megapixels": height * width / 1e6,
                    "shape": [height, width],
                    "noise": noise,
                    "median_s": float(np.median(times)),
                    "ari_median": float(np.median(scores)),
                    "ari_per_scene": scores,
                    "labels_median": float(np.median(regions)),
                }
            )
            row = rows[-1]
            print(f"{height}x{width} noise {noise:g} {name}: {row['median_s']:.3f} s, ARI {row['ari_median']:.3f}")
    return rows


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import skimage

    from gpuseg.benchmarks.suite import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--noise", type=float, nargs="+", default=[4.0, 12.0], help="levels of Gaussian noise")
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = measure(args.sizes, args.noise, args.scenes, args.repeat)
    document = {
        "machine": {**machine(), "scikit-image": skimage.__version__},
        "scenes": args.scenes,
        "repeats": args.repeat,
        "rows": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "segmenters.json").write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
