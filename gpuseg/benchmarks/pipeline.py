"""The end-to-end benchmark behind ``gpuseg bench --pipeline``: a generated folder of JPEG photos segmented
by the streaming pipeline, beside the same images one at a time, and a rerun with ``skip_existing``."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpuseg.benchmarks.suite import machine, photo_image
from gpuseg.data import tiled
from gpuseg.options import SegmentOptions
from gpuseg.params import DeviceName
from gpuseg.scale.inputs import expand_inputs
from gpuseg.scale.many import segment_many
from gpuseg.segmentation.outputs import save_outputs
from gpuseg.segmentation.pipeline import segment


def photo_folder(folder: Path, n_images: int, megapixels: float) -> list[Path]:
    """``n_images`` JPEGs (quality 90) of Grace Hopper's portrait tiled to ``megapixels``, each with its own
    sensor-like noise (sigma 2 levels), so that no two are alike."""
    import cv2

    base = tiled(photo_image(), megapixels)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n_images):
        rng = np.random.default_rng(k)
        noisy = np.clip(base + rng.normal(0, 2, base.shape).round(), 0, 255).astype(np.uint8)
        path = folder / f"photo{k:03d}.jpg"
        cv2.imwrite(str(path), noisy[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def run(
    n_images: int = 10, megapixels: float = 1.2, device: DeviceName = "auto", jobs: int | None = None
) -> dict[str, Any]:
    """Seconds and images/s of the pipeline and of one image at a time (load, segment, save in turn), on
    the same generated folder with gpuseg's defaults; the pipeline's wall time against the sum of its cluster
    stages; a rerun with ``skip_existing``; labels of both ways identical."""
    options = SegmentOptions(device=device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = photo_folder(root / "photos", n_images, megapixels)
        segment(paths[0], device=device)  # warm-up: kernels compiled and loaded, device initialised
        start = time.perf_counter()
        cluster_alone = 0.0
        for path in paths:
            result = segment(path, device=device)
            cluster_alone += result.report["timings_s"]["cluster"]
            save_outputs(result, root / "alone" / path.stem)
        alone_s = time.perf_counter() - start
        found = expand_inputs([root / "photos"], root / "pipeline")
        summary = segment_many(found, options, jobs=jobs, manifest=root / "pipeline" / "manifest.jsonl")
        rerun = segment_many(found, options, jobs=jobs, skip_existing=True)
        same = all(
            np.array_equal(
                np.load(root / "alone" / f"{p.stem}.labels.npy"), np.load(root / "pipeline" / f"{p.stem}.labels.npy")
            )
            for p in paths
        )
        megapixels_each = summary.megapixels / max(summary.done, 1)
    cluster_s = summary.stage_s.get("cluster", 0.0)
    return {
        "images": n_images,
        "megapixels_each": round(megapixels_each, 3),
        "device": device,
        "jobs": jobs or min(8, os.cpu_count() or 1),
        "one_at_a_time_s": alone_s,
        "one_at_a_time_images_per_s": n_images / alone_s,
        "pipeline_s": summary.wall_s,
        "pipeline_images_per_s": summary.done / summary.wall_s,
        "pipeline_megapixels_per_s": summary.megapixels / summary.wall_s,
        "pipeline_stage_s": summary.stage_s,
        "sum_of_cluster_stages_s": cluster_s,
        "pipeline_over_cluster_stages": summary.wall_s / cluster_s if cluster_s else None,
        "one_at_a_time_cluster_stages_s": cluster_alone,
        "skip_existing_rerun_s": rerun.wall_s,
        "rerun_over_first_run": rerun.wall_s / summary.wall_s,
        "failed": summary.failed,
        "identical_labels": same,
    }


def write(result: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pipeline.json"
    path.write_text(json.dumps({"machine": machine(), "result": result}, indent=2) + "\n")
    return path
