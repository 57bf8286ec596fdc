"""The exact CPU engines against scikit-learn, side by side in one run (cluster stage only).

    PYTHONPATH=. python bench/cpu_bench.py [OUT_DIR] [--repeat N]

Each (case, engine) runs in a fresh child process, so its peak memory (ru_maxrss) is its own: the child
builds the features, warms the compiled code up on a small input, then times ``repeat`` runs (median,
min, max). scikit-learn runs on the raw rows unless its predicted neighbourhood memory is over what the
machine has; then the row says so. Writes OUT_DIR/cpu_bench.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {
    "make_blobs (seed example)": dict(kind="blobs", eps=0.3, min_samples=10),
    "retina 1411x1411 rgb+xy": dict(kind="retina", color="rgb", xy_scale=0.01, eps=0.0523, min_samples=20),
    "astronaut 512x512 rgb": dict(kind="astronaut", color="rgb", xy_scale=None, eps=0.03, min_samples=50),
    "RGBA logo 500x500, alpha feature (seed recipe)": dict(
        kind="logo", color="rgb", alpha="feature", xy_scale=None, eps=0.01, min_samples=500
    ),
    "50 MP photo rgb+xy": dict(kind="photo50", color="rgb", xy_scale=0.01, eps=0.0523, min_samples=20),
}
ENGINES = {
    "make_blobs (seed example)": ["sklearn", "cells"],
    "retina 1411x1411 rgb+xy": ["sklearn", "grid"],
    "astronaut 512x512 rgb": ["sklearn", "sklearn-merged", "cells"],
    "RGBA logo 500x500, alpha feature (seed recipe)": ["sklearn", "sklearn-merged", "cells"],
    "50 MP photo rgb+xy": ["sklearn", "grid"],
}


def make_features(case: dict):
    from skimage import data

    from gpuseg.features import build_features, points_features
    from gpuseg.synthetic import logo_image, tiled

    if case["kind"] == "blobs":
        from sklearn.datasets import make_blobs
        from sklearn.preprocessing import StandardScaler

        X, _ = make_blobs(n_samples=750, centers=[[1, 1], [-1, -1], [1, -1]], cluster_std=0.4, random_state=0)
        return points_features(StandardScaler().fit_transform(X))
    image = {
        "retina": data.retina,
        "astronaut": data.astronaut,
        "logo": lambda: logo_image(500),
        "photo50": lambda: tiled(data.astronaut(), 50.0),
    }[case["kind"]]()
    return build_features(
        image, color=case.get("color", "rgb"), alpha=case.get("alpha", "ignore"), xy_scale=case.get("xy_scale")
    )


def child(name: str, engine: str, repeat: int, queue) -> None:
    from gpuseg.cluster import cluster_features
    from gpuseg.engines.sklearn import available_memory, predicted_memory
    from gpuseg.errors import MemoryLimitError

    case = CASES[name]
    features = make_features(case)
    params = dict(eps=case["eps"], min_samples=case["min_samples"], engine=engine, device="cpu")
    if engine == "sklearn":
        need = predicted_memory(features.matrix(), case["eps"])
        if need > 0.8 * available_memory():
            queue.put(
                dict(
                    skipped=f"predicted neighbourhood memory {need / 2**30:.1f} GiB > 80% of the "
                    f"{available_memory() / 2**30:.1f} GiB available"
                )
            )
            return
    else:  # warm the compiled kernels up on a small input of the same kind
        small = make_small(features)
        cluster_features(small, **{**params, "min_samples": 3})
    times, labels = [], None
    for _ in range(repeat if engine != "sklearn" or features.n_samples < 10**6 else 1):
        start = time.perf_counter()
        try:
            run = cluster_features(features, **params)
        except MemoryLimitError as exc:
            queue.put(dict(skipped=str(exc)))
            return
        times.append(time.perf_counter() - start)
        labels = run.labels
    queue.put(
        dict(
            seconds=times,
            peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            n_samples=features.n_samples,
            n_clusters=int(labels.max()) + 1,
            labels=labels.astype(np.int32) if labels.size <= 5_000_000 else None,
        )
    )


def make_small(features):
    from gpuseg.features import Features

    if features.points is not None:
        return Features(names=features.names, points=features.points[:50])
    return Features(
        names=features.names,
        colours=features.colours[:16, :16],
        lut=features.lut,
        mask=None if features.mask is None else features.mask[:16, :16],
        xy_scale=features.xy_scale,
    )


def run_in_child(name: str, engine: str, repeat: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(name, engine, repeat, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def machine() -> dict:
    import numba
    import sklearn

    from gpuseg.device import cpu_name
    from gpuseg.engines.sklearn import available_memory

    return {
        "cpu": cpu_name(),
        "memory_gib": round(available_memory() / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "scikit-learn": sklearn.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, nargs="?", default=ROOT / "bench" / "results")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default=None, help="run only the cases whose name contains this")
    args = parser.parse_args()
    rows = []
    for name in CASES:
        if args.only and args.only not in name:
            continue
        results = {engine: run_in_child(name, engine, args.repeat) for engine in ENGINES[name]}
        reference = results.get("sklearn", {}).get("labels")
        if reference is None:
            reference = results.get("sklearn-merged", {}).get("labels")
        for engine, r in results.items():
            row = {"case": name, "engine": engine}
            if "skipped" in r:
                row["skipped"] = r["skipped"]
            else:
                t = np.array(r["seconds"])
                row.update(
                    median_s=float(np.median(t)),
                    min_s=float(t.min()),
                    max_s=float(t.max()),
                    repeats=len(t),
                    peak_rss_mib=round(r["peak_rss_mib"], 1),
                    n_samples=r["n_samples"],
                    n_clusters=r["n_clusters"],
                )
                if reference is not None and r["labels"] is not None:
                    row["identical_to_reference"] = bool(np.array_equal(r["labels"], reference))
            rows.append(row)
            print(json.dumps(row), flush=True)
    for name in CASES:
        case_rows = [r for r in rows if r["case"] == name and "median_s" in r]
        refs = [r for r in case_rows if r["engine"].startswith("sklearn")]
        for r in case_rows:
            if not r["engine"].startswith("sklearn") and refs:
                r["speedup_vs"] = {ref["engine"]: ref["median_s"] / r["median_s"] for ref in refs}
    out = args.out_dir / "cpu_bench.json"
    if args.only and out.exists():  # keep the other cases' rows of the last full run
        kept = [r for r in json.loads(out.read_text())["rows"] if args.only not in r["case"]]
        order = list(CASES)
        rows = sorted(kept + rows, key=lambda r: order.index(r["case"]))
    document = {"machine": machine(), "rows": rows}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "cpu_bench.json").write_text(json.dumps(document, indent=2) + "\n")
    print(markdown(document))


def markdown(document: dict) -> str:
    m = document["machine"]
    lines = [
        f"CPU: {m['cpu']}, {m['memory_gib']} GiB available; numba {m['numba']}, scikit-learn {m['scikit-learn']}",
        "",
        "| case | engine | cluster stage (median) | runs | peak RSS | speed-up | same labels |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in document["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['case']} | {r['engine']} | not run: {r['skipped']} | | | | |")
            continue
        speed = ", ".join(f"{v:.0f}x vs {k}" for k, v in r.get("speedup_vs", {}).items())
        same = r.get("identical_to_reference", "")
        lines.append(
            f"| {r['case']} | {r['engine']} | {r['median_s']:.3f} s | {r['repeats']} | {r['peak_rss_mib']:.0f} MiB "
            f"| {speed} | {same} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
