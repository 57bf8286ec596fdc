"""One command that checks and times gpuseg's GPU engines on a CUDA machine.

    PYTHONPATH=. python bench/gpu_check.py OUT_DIR [--quick]

(a) GPU labels against the CPU engine and scikit-learn on small and medium images; (b) every GPU stage timed
(warm-up, then the median of repeats; CUDA events around the whole cluster stage) on 0.25, 2, 12 and 24
megapixel images, colour only and colour + position, beside the CPU exact engine on every core of the same
machine; (c) a whole `segment` run on a 24 MP PNG, stage by stage; (d) a batch of 64 images of 0.25 MP with
``dbscan_images`` (one run per stage) against one run per image, images per second on GPU and CPU; (e) a
folder of 16 JPEGs of 24 MP end to end through the streaming pipeline, beside one image at a time; (f) the
HTTP service (bench/serve_load.py) at 0.25, 2 and 24 MP under 4 and 16 concurrent clients; (g) the page's
re-clustering of a 2 MP photo as the service answers it. Writes
OUT_DIR/gpu_check.json and prints a short table last. ``--simulate`` runs the same script on tiny images
under numba's CUDA simulator (set NUMBA_ENABLE_CUDASIM=1), to check the script itself on a machine without
a GPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", message=".*under-utilization.*")  # small correctness cases, on purpose
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuseg._core.device import Device, cpu_name  # noqa: E402
from gpuseg._core.timing import StageTimer  # noqa: E402
from gpuseg.data import tiled  # noqa: E402
from gpuseg.engines.base import Job  # noqa: E402
from gpuseg.engines.run import cluster_features  # noqa: E402
from gpuseg.features import build_features  # noqa: E402

POSITION = dict(color="rgb", xy_scale=0.01, eps=0.0523, min_samples=20)  # stencil radius 5
COLOUR = dict(color="rgb", xy_scale=None, eps=0.03, min_samples=50)


def photo(megapixels: float, seed: int = 0) -> np.ndarray:
    """scikit-image's astronaut, mirrored-tiled to size, with sensor-like noise (sigma 2 levels) so that a
    large image has as many distinct colours as a real photo, not only the tile's."""
    from skimage import data

    image = tiled(data.astronaut(), megapixels)
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.int16) + rng.normal(0, 2, image.shape).round().astype(np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


class Check:
    def __init__(self, simulate: bool):
        self.simulate = simulate
        if simulate:
            self.xp = np
            self.device = Device("gpu", "CUDA simulator")
        else:
            import cupy

            self.xp = cupy
            props = cupy.cuda.runtime.getDeviceProperties(0)
            name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            self.device = Device("gpu", name)
        self.results: dict = {"machine": self.machine(), "correctness": [], "timings": [], "segment": None}

    def machine(self) -> dict:
        import numba

        info = {
            "gpu": self.device.name,
            "cpu": cpu_name(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "numba": numba.__version__,
            "simulated": self.simulate,
        }
        if not self.simulate:
            import cupy

            free, total = cupy.cuda.Device().mem_info
            info.update(
                cupy=cupy.__version__,
                gpu_memory_gib=round(total / 2**30, 1),
                cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                driver=cupy.cuda.runtime.driverGetVersion(),
            )
        return info

    def sync(self) -> None:
        if not self.simulate:
            self.xp.cuda.get_current_stream().synchronize()

    def gpu_run(self, features, opts: dict, band_rows: int | None = None):
        """Run the GPU engine on features on the device, or in host memory with ``band_rows`` (the grid engine
        then uploads them band by band); (labels on host, seconds, stage seconds)."""
        from gpuseg.engines.cells import run_cells
        from gpuseg.engines.grid import run_grid

        run = functools.partial(run_grid, band_rows=band_rows) if opts["xy_scale"] else run_cells
        job = Job(features, opts["eps"], opts["min_samples"], None, self.device, StageTimer(self.sync))
        if self.simulate:
            start = time.perf_counter()
            labels = run(job, self.xp)
            seconds = time.perf_counter() - start
            return np.asarray(labels), seconds, job.sub_seconds
        begin, end = self.xp.cuda.Event(), self.xp.cuda.Event()
        begin.record()
        labels = run(job, self.xp)
        end.record()
        end.synchronize()
        return labels.get(), self.xp.cuda.get_elapsed_time(begin, end) / 1e3, job.sub_seconds

    def on_device(self, image: np.ndarray, opts: dict):
        return build_features(self.xp.asarray(image), color=opts["color"], xy_scale=opts["xy_scale"])

    # ------------------------------------------------------------------------------------ (a) correctness

    def correctness(self, cases) -> None:
        from sklearn.cluster import DBSCAN

        for name, image, opts, with_sklearn, *band in cases:
            host = build_features(image, color=opts["color"], xy_scale=opts["xy_scale"])
            band_rows = band[0] if band else None
            gpu, _, _ = self.gpu_run(host if band_rows else self.on_device(image, opts), opts, band_rows)
            engine = "grid" if opts["xy_scale"] else "cells"
            cpu = cluster_features(host, eps=opts["eps"], min_samples=opts["min_samples"], engine=engine, device="cpu")
            row = {
                "case": name,
                "pixels": int(image.shape[0] * image.shape[1]),
                "engine": engine,
                "n_clusters": int(gpu.max()) + 1,
                "identical_to_cpu_engine": bool(np.array_equal(gpu, cpu.labels)),
            }
            if with_sklearn:
                X = host.matrix()
                if opts["xy_scale"]:
                    ref = DBSCAN(eps=opts["eps"], min_samples=opts["min_samples"]).fit(X).labels_
                    row["reference"] = "sklearn"
                else:
                    ref = cluster_features(
                        host, eps=opts["eps"], min_samples=opts["min_samples"], engine="sklearn-merged"
                    ).labels
                    row["reference"] = "sklearn-merged"
                row["identical_to_sklearn"] = bool(np.array_equal(gpu, ref))
            self.results["correctness"].append(row)
            print("correctness", row, flush=True)

    # ---------------------------------------------------------------------------------------- (b) timings

    def timings(self, sizes, repeats: int, cpu_sizes) -> None:
        for mp in sizes:
            image = photo(mp)
            pixels = image.shape[0] * image.shape[1]
            for mode, opts in (("colour+position", POSITION), ("colour", COLOUR)):
                features = self.on_device(image, opts)
                self.gpu_run(features, opts)  # warm-up: compilation, allocator
                runs = [self.gpu_run(features, opts) for _ in range(repeats)]
                seconds = [r[1] for r in runs]
                labels, _, stages = runs[-1]
                row = {
                    "mode": mode,
                    "megapixels": round(pixels / 1e6, 2),
                    "gpu_s_median": float(np.median(seconds)),
                    "gpu_s_min": float(np.min(seconds)),
                    "gpu_s_max": float(np.max(seconds)),
                    "repeats": repeats,
                    "gpu_gpx_per_s": pixels / float(np.median(seconds)) / 1e9,
                    "gpu_stages_s": stages,
                    "n_clusters": int(labels.max()) + 1,
                }
                if mp in cpu_sizes:
                    host = build_features(image, color=opts["color"], xy_scale=opts["xy_scale"])
                    engine = "grid" if opts["xy_scale"] else "cells"
                    start = time.perf_counter()
                    cpu = cluster_features(
                        host, eps=opts["eps"], min_samples=opts["min_samples"], engine=engine, device="cpu"
                    )
                    row["cpu_s"] = time.perf_counter() - start
                    row["cpu_stages_s"] = cpu.sub_seconds
                    row["speedup_vs_cpu"] = row["cpu_s"] / row["gpu_s_median"]
                    row["identical_to_cpu_engine"] = bool(np.array_equal(labels, cpu.labels))
                self.results["timings"].append(row)
                print("timing", row, flush=True)
                del features

    # ------------------------------------------------------------------------------------ (d) batches

    def batch(self, n_images: int, megapixels: float, repeats: int) -> None:
        """``dbscan_images`` on a batch of same-sized images (one run per stage) against one run per image,
        on this device and on the CPU (bench/batch_images.py): images per second, labels identical."""
        from batch_images import measure

        images = [photo(megapixels, seed=k) for k in range(n_images)]
        devices = ("cpu",) if self.simulate else ("gpu", "cpu")
        self.results["batch"] = measure(images, devices, repeats, self.sync)
        print("batch", self.results["batch"], flush=True)

    # ------------------------------------------------------------------------------------ (e) folders

    def folder(self, n_images: int, megapixels: float) -> None:
        """A folder of JPEGs end to end (decode to files written) through the streaming pipeline, beside one
        image at a time (``gpuseg bench --pipeline``)."""
        from gpuseg.benchmarks import pipeline as pipeline_bench

        device = "cpu" if self.simulate else "gpu"
        self.results["folder"] = pipeline_bench.run(n_images, megapixels, device)
        print("folder", self.results["folder"], flush=True)

    # ------------------------------------------------------------------------------------ (g) the page

    def page(self, megapixels: float, repeats: int) -> None:
        """The interactive page's re-clustering as the service answers it (server side, through the app in
        process): one upload of a photo, then eps moved ``repeats`` times at full resolution (features kept,
        cluster, picture encoded), and as a dragged slider's preview; the median of each."""
        import cv2
        from fastapi.testclient import TestClient

        from gpuseg.serve import Settings, create_app

        image = photo(megapixels)
        data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
        device = "cpu" if self.simulate else "gpu"
        row = {"megapixels": round(image.shape[0] * image.shape[1] / 1e6, 2), "device": device}
        with TestClient(create_app(Settings(device=device, warm_up=False))) as client:
            sid = client.post("/v1/sessions", files={"image": ("photo.png", data, "image/png")}).json()["id"]
            for preview in (False, True):
                seconds = []
                for k in range(repeats + 1):  # the first pays for the features and compiled kernels
                    start = time.perf_counter()
                    answer = client.get(
                        f"/v1/sessions/{sid}/segment", params={"eps": 0.05 + 0.001 * k, "preview": preview}
                    )
                    answer.raise_for_status()
                    seconds.append(time.perf_counter() - start)
                name = "preview" if preview else "full"
                row[f"{name}_s_median"] = float(np.median(seconds[1:]))
                row[f"{name}_cluster_s"] = answer.json()["cluster_s"]
        self.results["page"] = row
        print("page", row, flush=True)

    # ------------------------------------------------------------------------------------ (f) service

    def serve(self, sizes: list[float], counts: list[int], out_dir: Path) -> None:
        """``gpuseg serve`` on this device under 4 and 16 concurrent clients (bench/serve_load.py)."""
        from serve_load import measure

        device = "cpu" if self.simulate else "gpu"
        out_dir.mkdir(parents=True, exist_ok=True)
        self.results["serve"] = measure(sizes, [4, 16], counts, device, out_dir / "server.log")
        print("serve", self.results["serve"], flush=True)

    # ------------------------------------------------------------------------------------ (c) whole segment

    def whole_segment(self, megapixels: float) -> None:
        import cv2

        from gpuseg.segmentation.pipeline import save_outputs, segment

        image = photo(megapixels)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "photo.png"
            start = time.perf_counter()
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
            encode_s = time.perf_counter() - start
            device = "cpu" if self.simulate else "gpu"
            opts = {k: v for k, v in POSITION.items()}
            for attempt in range(2):  # the first run pays for loading; the second is reported
                result = segment(path, device=device, **opts)
                save_outputs(result, Path(tmp) / f"out{attempt}" / "photo", overwrite=True)
            report = result.report
        self.results["segment"] = {
            "megapixels": round(image.shape[0] * image.shape[1] / 1e6, 2),
            "png_bytes": None,
            "png_encode_s_for_reference": encode_s,
            "device": report["device"],
            "engine": report["engine"],
            "timings_s": report["timings_s"],
            "cluster_stages_s": report["cluster_stages_s"],
            "n_clusters": report["n_clusters"],
        }
        print("segment", self.results["segment"], flush=True)


def table(results: dict) -> str:
    lines = [f"gpuseg GPU check on {results['machine']['gpu']} ({results['machine']['cpu']})"]
    for row in results["correctness"]:
        verdict = row["identical_to_cpu_engine"] and row.get("identical_to_sklearn", True)
        reference = f"{row.get('reference', '-')} {row.get('identical_to_sklearn', '-')}"
        lines.append(
            f"  check {row['case']:<28} {row['engine']:<5} {'identical' if verdict else 'DIFFERENT'}"
            f" (cpu engine {row['identical_to_cpu_engine']}, {reference})"
        )
    lines.append(f"  {'mode':<16} {'MP':>6} {'GPU ms':>9} {'Gpx/s':>7} {'CPU ms':>9} {'speedup':>8} same")
    for row in results["timings"]:
        cpu = f"{row['cpu_s'] * 1e3:9.1f}" if "cpu_s" in row else f"{'-':>9}"
        speed = f"{row['speedup_vs_cpu']:8.1f}" if "cpu_s" in row else f"{'-':>8}"
        lines.append(
            f"  {row['mode']:<16} {row['megapixels']:6.2f} {row['gpu_s_median'] * 1e3:9.2f} {row['gpu_gpx_per_s']:7.3f}"
            f" {cpu} {speed} {row.get('identical_to_cpu_engine', '-')}"
        )
    folder = results.get("folder")
    if folder:
        lines.append(
            f"  folder of {folder['images']} JPEGs x {folder['megapixels_each']} MP: pipeline "
            f"{folder['pipeline_images_per_s']:.2f} images/s, one at a time {folder['one_at_a_time_images_per_s']:.2f}"
            f" images/s, same labels {folder['identical_labels']}"
        )
    batch = results.get("batch")
    if batch:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in batch.items() if k.endswith("images_per_s"))
        lines.append(f"  batch of {batch['images']} x {batch['megapixels_each']} MP, images/s: {parts}")
    seg = results.get("segment")
    if seg:
        parts = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in seg["timings_s"].items())
        lines.append(f"  segment {seg['megapixels']} MP PNG on {seg['device']}: {parts}")
    page = results.get("page")
    if page:
        lines.append(
            f"  page, {page['megapixels']} MP on {page['device']}: eps moved {page['full_s_median'] * 1e3:.0f} ms "
            f"(cluster {page['full_cluster_s'] * 1e3:.1f} ms), preview {page['preview_s_median'] * 1e3:.0f} ms"
        )
    for row in results.get("serve", {}).get("rows", []):
        lines.append(
            f"  serve {row['megapixels']:g} MP, {row['clients']} clients: {row['requests_per_s']:.2f} requests/s, "
            f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, {row['statuses']}"
        )
    for error in results.get("errors", []):
        lines.append(f"  ERROR in {error['section']}: {error['error']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--simulate", action="store_true", help="tiny sizes under the CUDA simulator")
    args = parser.parse_args()
    if args.simulate:
        os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    check = Check(args.simulate)
    from skimage import data

    small = data.astronaut()[100:196, 150:278]
    if args.simulate:
        small = small[:24, :20]
        sizes, repeats, cpu_sizes, segment_mp = [0.0004, 0.0008], 2, [0.0004, 0.0008], 0.0006
        medium = small
        batch_size = (3, 0.0004, 1)
        folder_size = (3, 0.01)
        page_mp = 0.01
    elif args.quick:
        batch_size = (16, 0.25, 3)
        folder_size = (8, 2)
        page_mp = 2
        serve_size = ([0.01], [8])
    elif args.quick:
        batch_size = (16, 0.25, 3)
        folder_size = (8, 2)
        serve_size = ([0.25, 2], [40, 20])
        sizes, repeats, cpu_sizes, segment_mp = [0.25, 2], 3, [0.25, 2], 2
        medium = photo(1.0)
    else:
        sizes, repeats, cpu_sizes, segment_mp = [0.25, 2, 12, 24], 5, [0.25, 2, 12, 24], 24
        medium = photo(1.0)
        batch_size = (64, 0.25, 3)
        folder_size = (16, 24)
        page_mp = 2
        serve_size = ([0.25, 2, 24], [150, 100, 32])
    lab = dict(color="lab", xy_scale=0.02, eps=0.0712, min_samples=8)
    cases = [
        ("small rgb+xy", small, POSITION, True),
        ("small lab+xy", small, lab, True),
        ("small rgb colour-only", small, COLOUR, True),
        ("astronaut 512 rgb+xy", data.astronaut() if not args.simulate else small, POSITION, not args.simulate),
        ("medium 1MP rgb+xy", medium, POSITION, False),
        ("medium 1MP rgb colour-only", medium, COLOUR, True),
        ("medium 1MP rgb+xy from host memory in bands of 97 rows", medium, POSITION, False, 97),
    ]
    errors = []
    sections = (
        ("correctness", lambda: check.correctness(cases)),
        ("timings", lambda: check.timings(sizes, repeats, cpu_sizes)),
        ("segment", lambda: check.whole_segment(segment_mp)),
        ("batch", lambda: check.batch(*batch_size)),
        ("folder", lambda: check.folder(*folder_size)),
        ("page", lambda: check.page(page_mp, 10)),
        ("serve", lambda: check.serve(*serve_size, args.out_dir / "serve")),
    )
    for section, run in sections:
        try:
            run()
        except Exception as exc:  # keep going: one broken section must not lose the others' numbers
            traceback.print_exc()
            errors.append({"section": section, "error": f"{type(exc).__name__}: {exc}"})
    check.results["errors"] = errors
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "gpu_check.json").write_text(json.dumps(check.results, indent=2) + "\n")
    print(table(check.results))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
