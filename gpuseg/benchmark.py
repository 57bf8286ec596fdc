"""The benchmark suite behind `gpuseg bench`: every case with every engine the machine has, side by side.

Each (case, engine, device) runs in a fresh child process, so its peak memory is its own: the child loads
the libraries, warms the compiled code up on a small input of the same kind, builds the case, then times
the cluster stage ``repeat`` times (device work synchronised). Labels are compared with scikit-learn's on
the raw rows, or on merged rows, or with the CPU exact engine, whichever is the first that could run. A
run that cannot happen (library missing, no GPU, scikit-learn's neighbourhoods would not fit in memory) is
a row with the reason.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import platform
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_SIZES = (0.25, 1.0, 2.0, 12.0, 50.0)
QUICK_SIZES = (0.25,)
POINTS_FOR_SKLEARN_REPEATS = 10**6
"""scikit-learn on more rows than this runs once (it takes minutes); everything else ``repeat`` times."""


@dataclass(frozen=True)
class Case:
    """One input: plain points (``source`` blobs...) or an image (``source`` a photo, tiled to ``megapixels``)."""

    name: str
    source: str
    eps: float
    min_samples: int
    megapixels: float | None = None
    color: str = "rgb"
    alpha: str = "ignore"
    xy_scale: float | None = None
    family: str = ""

    @property
    def exact_engine(self) -> str:
        return "grid" if self.xy_scale else "cells"


def suite(sizes=DEFAULT_SIZES, quick: bool = False) -> list[Case]:
    """The cases of a run: the seed's examples, generic point sets, and photos at each size."""
    cases = [
        Case("make_blobs 750 (seed example)", "blobs750", 0.3, 10),
        Case("RGBA logo 500x500, alpha feature (seed recipe)", "logo", 0.01, 500, alpha="feature"),
    ]
    if not quick:
        cases += [
            Case("blobs 1M points 2-D", "blobs1m2", 0.05, 50),
            Case("blobs 1M points 3-D", "blobs1m3", 0.1, 50),
            Case("retina 1411x1411 rgb+xy", "retina", 0.0523, 20, xy_scale=0.01),
        ]
    for mp_size in sizes:
        cases.append(Case(f"photo {mp_size:g} MP rgb", "photo", 0.03, 50, megapixels=mp_size, family="photo rgb"))
        cases.append(
            Case(
                f"photo {mp_size:g} MP rgb+xy",
                "photo",
                0.0523,
                20,
                megapixels=mp_size,
                xy_scale=0.01,
                family="photo rgb+xy",
            )
        )
    return cases


def make_features(case: Case):
    from gpuseg.features import build_features, points_features
    from gpuseg.synthetic import logo_image, tiled

    if case.source.startswith("blobs"):
        from sklearn.datasets import make_blobs

        if case.source == "blobs750":
            from sklearn.preprocessing import StandardScaler

            X, _ = make_blobs(750, centers=[[1, 1], [-1, -1], [1, -1]], cluster_std=0.4, random_state=0)
            return points_features(StandardScaler().fit_transform(X))
        dims = int(case.source[-1])
        X, _ = make_blobs(1_000_000, n_features=dims, centers=5, cluster_std=1.0, random_state=0)
        return points_features(X)
    from skimage import data

    if case.source == "logo":
        image = logo_image(500)
    elif case.source == "retina":
        image = data.retina()
    else:
        image = tiled(data.astronaut(), case.megapixels) if case.megapixels != 0.25 else data.astronaut()
    return build_features(image, color=case.color, alpha=case.alpha, xy_scale=case.xy_scale)


def engine_runs(case: Case, engines=None, device: str = "auto") -> list[tuple[str, str]]:
    """(engine, device kind) pairs for a case, before availability: the reference first."""
    runs = [("sklearn", "cpu")]
    if not case.xy_scale:
        runs.append(("sklearn-merged", "cpu"))
    runs += [(case.exact_engine, "cpu"), (case.exact_engine, "gpu"), ("cuml", "gpu")]
    return [(e, d) for e, d in runs if (engines is None or e in engines) and (device == "auto" or d == device)]


def why_not(engine: str, device: str) -> str | None:
    """Why an engine cannot run here at all (the per-input reasons come from the child)."""
    from gpuseg.device import gpu_status
    from gpuseg.engines import ENGINES

    missing = ENGINES[engine].why_missing()
    if missing:
        return missing
    if device == "gpu" and not gpu_status().usable:
        return f"no GPU: {gpu_status().reason}"
    return None


@dataclass
class Row:
    case: str
    engine: str
    device: str
    n_samples: int | None = None
    megapixels: float | None = None
    median_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    repeats: int = 0
    mpix_per_s: float | None = None
    peak_rss_mib: float | None = None
    base_rss_mib: float | None = None
    n_clusters: int | None = None
    identical: bool | None = None
    reference: str | None = None
    reason: str | None = None
    family: str = ""
    extra: dict = field(default_factory=dict)


def _child(case: Case, engine: str, device: str, repeat: int, labels_path: str, queue) -> None:
    try:
        queue.put(_measure(case, engine, device, repeat, labels_path))
    except Exception as exc:  # a row with the reason, never a crash of the whole suite
        queue.put({"reason": f"{type(exc).__name__}: {exc}"})


def _measure(case: Case, engine: str, device: str, repeat: int, labels_path: str) -> dict:
    from gpuseg.cluster import cluster_features
    from gpuseg.errors import MemoryLimitError
    from gpuseg.report import StageTimer

    params = dict(eps=case.eps, min_samples=case.min_samples, engine=engine, device=device)
    if engine != "sklearn":
        cluster_features(_small(case), **{**params, "min_samples": 3})  # compile and load kernels
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    features = make_features(case)
    runs = 1 if engine.startswith("sklearn") and features.n_samples > POINTS_FOR_SKLEARN_REPEATS else repeat
    seconds, labels = [], None
    for _ in range(runs):
        timer = StageTimer()
        try:
            labels = cluster_features(features, timer=timer, **params).labels
        except MemoryLimitError as exc:  # scikit-learn's guard: a row with its reason
            return {"reason": str(exc)}
        seconds.append(timer.seconds["cluster"])
    np.save(labels_path, labels)
    return {
        "seconds": seconds,
        "n_samples": features.n_samples,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "base_rss_mib": base,
        "n_clusters": int(labels.max()) + 1 if labels.size else 0,
    }


def _small(case: Case):
    """A tiny input of the case's kind, to compile and load the kernels before the clock starts."""
    from gpuseg.features import build_features
    from gpuseg.synthetic import logo_image

    if case.source.startswith("blobs"):
        return make_features(Case("small", "blobs750", 0.3, 3))
    image = logo_image(24) if case.alpha == "feature" else logo_image(24)[..., :3]
    return build_features(image, color=case.color, alpha=case.alpha, xy_scale=case.xy_scale)


def run_suite(cases: list[Case], *, engines=None, device: str = "auto", repeat: int = 5, progress=None) -> dict:
    """Run every case with every engine; the document written by :func:`write_outputs`."""
    rows: list[Row] = []
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            labels: dict[str, Path] = {}
            case_rows = []
            for engine, dev in engine_runs(case, engines, device):
                row = Row(case.name, engine, dev, megapixels=case.megapixels, family=case.family)
                reason = why_not(engine, dev)
                if reason is None:
                    path = Path(tmp) / f"{len(rows)}-{engine}-{dev}.npy"
                    queue = ctx.Queue()
                    proc = ctx.Process(target=_child, args=(case, engine, dev, repeat, str(path), queue))
                    proc.start()
                    result = queue.get()
                    proc.join()
                    reason = result.get("reason")
                    if reason is None:
                        t = np.array(result["seconds"])
                        row.n_samples = result["n_samples"]
                        row.median_s, row.min_s, row.max_s = float(np.median(t)), float(t.min()), float(t.max())
                        row.repeats = len(t)
                        row.mpix_per_s = row.n_samples / 1e6 / row.median_s if row.median_s > 0 else None
                        row.peak_rss_mib = round(result["peak_rss_mib"], 1)
                        row.base_rss_mib = round(result["base_rss_mib"], 1)
                        row.n_clusters = result["n_clusters"]
                        labels[f"{engine}/{dev}"] = path
                row.reason = reason
                case_rows.append(row)
                if progress:
                    progress(row)
            _compare(case, case_rows, labels)
            rows += case_rows
    return {"machine": machine(), "rows": [asdict(r) for r in rows]}


def _compare(case: Case, rows: list[Row], labels: dict[str, Path]) -> None:
    """Mark each row's labels identical or not to the first reference that ran."""
    for ref in ("sklearn/cpu", "sklearn-merged/cpu", f"{case.exact_engine}/cpu"):
        if ref in labels:
            reference = np.load(labels[ref])
            for row in rows:
                key = f"{row.engine}/{row.device}"
                if key in labels:
                    row.reference = ref.replace("/cpu", "")
                    row.identical = bool(np.array_equal(np.load(labels[key]), reference))
            return


def machine() -> dict:
    import numba
    import sklearn

    from gpuseg import __version__
    from gpuseg.device import cpu_name, gpu_status
    from gpuseg.engines.sklearn import available_memory

    gpu = gpu_status()
    return {
        "gpuseg": __version__,
        "cpu": cpu_name(),
        "memory_available_gib": round(available_memory() / 2**30, 1),
        "gpu": f"{gpu.name}, {gpu.total_memory / 2**30:.0f} GiB" if gpu.usable else f"none ({gpu.reason})",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "scikit-learn": sklearn.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


COLUMNS = ("case", "engine", "device", "n_samples", "median_s", "min_s", "max_s", "repeats", "mpix_per_s",
           "peak_rss_mib", "n_clusters", "identical", "reference", "reason")  # fmt: skip


def write_outputs(document: dict, out_dir: Path) -> list[Path]:
    """bench.json, bench.csv and bench.png (throughput against image size, log-log) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "bench.json", out_dir / "bench.csv"]
    paths[0].write_text(json.dumps(document, indent=2) + "\n")
    with paths[1].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(document["rows"])
    plot = plot_throughput(document, out_dir / "bench.png")
    return paths + ([plot] if plot else [])


def plot_throughput(document: dict, path: Path) -> Path | None:
    """Megapixels per second against image size, a line per engine and device, one panel per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted({r["family"] for r in document["rows"] if r["family"]})
    if not families:
        return None
    fig, axes = plt.subplots(1, len(families), figsize=(6 * len(families), 4.5), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        rows = [r for r in document["rows"] if r["family"] == family and r["mpix_per_s"]]
        for key in sorted({(r["engine"], r["device"]) for r in rows}):
            line = sorted((r["megapixels"], r["mpix_per_s"]) for r in rows if (r["engine"], r["device"]) == key)
            ax.plot(*zip(*line, strict=True), marker="o", label=f"{key[0]} ({key[1]})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("image size (megapixels)")
        ax.set_ylabel("cluster stage throughput (megapixels / s)")
        ax.set_title(family)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = document["machine"]
    fig.suptitle(f"gpuseg {m['gpuseg']} on {m['cpu']}; GPU: {m['gpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(document: dict):
    """A Rich table of the rows."""
    from rich.markup import escape
    from rich.table import Table

    from gpuseg.report import format_seconds

    t = Table("case", "engine", "cluster stage", "MP/s", "peak RSS", "same labels")
    for r in document["rows"]:
        engine = f"{r['engine']} ({r['device']})"
        if r["reason"]:
            short = r["reason"].split(" (")[0]
            t.add_row(r["case"], engine, f"[dim]not run: {escape(short)}[/dim]", "", "", "")
            continue
        spread = f"{format_seconds(r['min_s'])}-{format_seconds(r['max_s'])}, n={r['repeats']}"
        median = f"{format_seconds(r['median_s'])} ({spread})"
        same = "" if r["identical"] is None else f"{'yes' if r['identical'] else 'NO'} vs {r['reference']}"
        mps = f"{r['mpix_per_s']:.2f}" if r["mpix_per_s"] else ""
        t.add_row(r["case"], engine, median, mps, f"{r['peak_rss_mib']:.0f} MiB", same)
    return t
