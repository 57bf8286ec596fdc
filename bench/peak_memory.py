"""Peak memory of one colour + position run on the CPU, and the stage it falls in.

    PYTHONPATH=. python bench/peak_memory.py OUT_DIR [--megapixels 50]

Grace Hopper's portrait tiled to size (as `gpuseg bench` does), rgb, xy_scale 0.01, eps 0.0523,
min_samples 20, the grid engine. A thread samples the process's resident memory (/proc/self/statm) every
2 ms and notes the stage running at each new peak; measured in a fresh process after the kernels are loaded.
Writes OUT_DIR/peak_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gpuseg.benchmarks.suite import Case, _small, machine, make_features
    from gpuseg.engines import base
    from gpuseg.engines.run import cluster_features

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--megapixels", type=float, default=50.0)
    args = parser.parse_args()
    case = Case("peak", "photo", 0.0523, 20, megapixels=args.megapixels, xy_scale=0.01)
    options = dict(eps=case.eps, min_samples=case.min_samples, engine="grid", device="cpu")
    cluster_features(_small(case), **{**options, "min_samples": 3})  # kernels compiled and loaded

    stage = {"name": "features"}
    peak = {"bytes": 0, "stage": None}

    def sample() -> None:
        while True:
            now = rss()
            if now > peak["bytes"]:
                peak.update(bytes=now, stage=stage["name"])
            time.sleep(0.002)

    sub_stage = base.Job.sub_stage

    def named(job, name):
        stage["name"] = name
        return sub_stage(job, name)

    base.Job.sub_stage = named
    before = rss()
    threading.Thread(target=sample, daemon=True).start()
    features = make_features(case)
    with_features = rss()
    start = time.perf_counter()
    run = cluster_features(features, **options)
    seconds = time.perf_counter() - start
    time.sleep(0.05)
    result = {
        "pixels": features.n_samples,
        "cluster_s": seconds,
        "stages_s": run.sub_seconds,
        "rss_before_mib": before / 2**20,
        "rss_with_image_and_features_mib": with_features / 2**20,
        "peak_rss_mib": peak["bytes"] / 2**20,
        "peak_stage": peak["stage"],
        "peak_bytes_per_pixel": peak["bytes"] / features.n_samples,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "peak_memory.json").write_text(json.dumps({"machine": machine(), "result": result}, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
