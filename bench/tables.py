"""Markdown tables from the committed results, written into the READMEs between their markers.

python bench/tables.py          # print the tables
python bench/tables.py --write  # also replace the marked sections of README.md and bench/README.md
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
ROOT = BENCH.parent
CPU_SUITE = RESULTS / "bench-cpu-xeon-2core" / "bench.json"
PIPELINE = RESULTS / "pipeline-cpu-xeon-2core" / "pipeline.json"
BATCH = RESULTS / "batch-cpu-xeon-2core" / "batch_images.json"
SERVE = RESULTS / "serve-cpu-xeon-2core" / "serve_load.json"
SEGMENTERS = RESULTS / "segmenters-cpu-xeon-2core" / "segmenters.json"
PAGE = RESULTS / "page-cpu-xeon-2core" / "page.json"
CHUNKED = RESULTS / "chunked-cpu-xeon-2core"


def seconds(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def suite_table(document: dict) -> str:
    m = document["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['memory_available_gib']} GiB available, GPU {m['gpu']}; gpuseg {m['gpuseg']}, "
        f"numba {m['numba']}, scikit-learn {m['scikit-learn']}; {m['date']}.",
        "",
        "| case | engine | cluster stage, median (min-max, runs) | MP/s | peak RSS | same labels |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in document["rows"]:
        ran = r.get("extra", {}).get("ran")
        engine = f"{r['engine']}{f' ({ran})' if ran else ''} on {r['device']}"
        if r["reason"]:
            lines.append(f"| {r['case']} | {engine} | not run: {r['reason']} | | | |")
            continue
        same = "" if r["identical"] is None else f"{'yes' if r['identical'] else 'NO'} (vs {r['reference']})"
        lines.append(
            f"| {r['case']} | {engine} | {seconds(r['median_s'])} ({seconds(r['min_s'])}-{seconds(r['max_s'])}, "
            f"{r['repeats']}) | {r['mpix_per_s']:.2f} | {r['peak_rss_mib']:.0f} MiB | {same} |"
        )
    return "\n".join(lines)


def gpu_table(path: Path) -> str:
    r = json.loads(path.read_text())
    m = r["machine"]
    lines = [
        f"`{path.name}`: {m['gpu']} ({m.get('gpu_memory_gib', '?')} GiB), CPU {m['cpu']}, "
        f"CuPy {m.get('cupy', '?')}, numba {m['numba']}",
        "",
        "| features | MP | GPU cluster stage (median) | Gpx/s | CPU engine, all cores | speed-up | same labels |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in r["timings"]:
        lines.append(
            f"| {t['mode']} | {t['megapixels']:.2f} | {t['gpu_s_median'] * 1e3:.1f} ms ({t['repeats']} runs) "
            f"| {t['gpu_gpx_per_s']:.2f} | {t['cpu_s'] * 1e3:.0f} ms | {t['speedup_vs_cpu']:.0f}x "
            f"| {t['identical_to_cpu_engine']} |"
        )
    checks = r["correctness"]
    same = sum(c["identical_to_cpu_engine"] and c.get("identical_to_sklearn", True) for c in checks)
    detail = "; ".join(f"{c['case']}: {c.get('reference', 'cpu engine')}" for c in checks)
    lines += ["", f"Correctness: {same} of {len(checks)} checks identical ({detail})."]
    seg = r.get("segment")
    if seg:
        stages = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in seg["timings_s"].items())
        lines += ["", f"Whole `segment` of a {seg['megapixels']} MP PNG on the {seg['device'].upper()}: {stages}."]
    return "\n".join(lines)


def readme_table(document: dict, gpu_path: Path) -> str:
    """The README's summary: a row per headline case, each number with its machine."""
    rows = {(r["case"], r["engine"], r["device"]): r for r in document["rows"]}
    cpu = document["machine"]["cpu"]

    def cell(case: str, engine: str, device: str = "cpu") -> str:
        r = rows.get((case, engine, device))
        if r is None:
            return "—"
        if r["reason"]:
            return f"not run: {r['reason']}"
        ran = r.get("extra", {}).get("ran")
        via = f" ({ran})" if ran else ""
        return f"{seconds(r['median_s'])}{via}, {r['peak_rss_mib'] / 1024:.2f} GiB peak"

    lines = [
        f"| case (on {cpu} unless named) | scikit-learn | gpuseg (exact engine) |",
        "| --- | --- | --- |",
    ]
    photo = "Grace Hopper photo"
    for case, reference, exact in (
        (f"{photo} tiled to 1 MP rgb+xy", "sklearn", "grid"),
        (f"{photo} 0.25 MP rgb", "sklearn-merged", "cells"),
        (f"dbscan(pixel_features({photo} 0.25 MP, rgb+xy)) rows", "sklearn", "auto"),
        ("blobs 40k points 6-D", "sklearn", "auto"),
        ("blobs 40k points 8-D", "sklearn", "auto"),
        ("RGBA logo 500x500, alpha feature (seed recipe)", "sklearn", "cells"),
        (f"{photo} tiled to 50 MP rgb+xy", "sklearn", "grid"),
        ("blobs 1M points 2-D", "sklearn", "cells"),
    ):
        ref = cell(case, reference)
        if reference == "sklearn-merged":
            ref = f"raw rows: {cell(case, 'sklearn')}; merged rows: {ref}"
        fast = rows.get((case, exact, "cpu"))
        speed = ""
        base = rows.get((case, reference, "cpu"))
        if fast and base and fast["median_s"] and base["median_s"]:
            speed = f" ({base['median_s'] / fast['median_s']:.1f}x)"
        lines.append(f"| {case} | {ref} | {cell(case, exact)}{speed} |")
    g = json.loads(gpu_path.read_text())
    for t in g["timings"]:
        if t["megapixels"] > 20:
            lines.append(
                f"| photo {t['megapixels']:.0f} MP (noisy), {t['mode']} | — "
                f"| {t['cpu_s']:.2f} s on {g['machine']['cpu']}; "
                f"{g['machine']['gpu']}: {t['gpu_s_median'] * 1e3:.1f} ms ({t['gpu_gpx_per_s']:.2f} Gpx/s, "
                f"{t['speedup_vs_cpu']:.0f}x) |"
            )
    return "\n".join(lines)


def pipeline_table(path: Path) -> str:
    """The end-to-end folder run (`gpuseg bench --pipeline`)."""
    document = json.loads(path.read_text())
    m, r = document["machine"], document["result"]
    stages = ", ".join(f"{k} {seconds(v)}" for k, v in r["pipeline_stage_s"].items() if v > 0)
    return "\n".join(
        [
            f"`{path.relative_to(BENCH)}`: {m['cpu']}; {r['images']} JPEGs of {r['megapixels_each']:.2f} MP, "
            f"device {r['device']}, {r['jobs']} decode and {r['jobs']} write threads; {m['date']}.",
            "",
            "| run | wall | images/s | MP/s |",
            "| --- | --- | --- | --- |",
            f"| one image at a time (load, segment, save) | {seconds(r['one_at_a_time_s'])} "
            f"| {r['one_at_a_time_images_per_s']:.2f} | |",
            f"| streaming pipeline | {seconds(r['pipeline_s'])} | {r['pipeline_images_per_s']:.2f} "
            f"| {r['pipeline_megapixels_per_s']:.2f} |",
            f"| rerun with `--skip-existing` | {seconds(r['skip_existing_rerun_s'])} | | |",
            "",
            f"The pipeline's wall time is {r['pipeline_over_cluster_stages']:.2f}x the sum of its images' cluster "
            f"stages ({seconds(r['sum_of_cluster_stages_s'])}); time summed over its stages: {stages}. Labels "
            f"identical both ways: {'yes' if r['identical_labels'] else 'NO'}.",
        ]
    )


def batch_table(path: Path) -> str:
    """Batches of small images (`bench/batch_images.py`)."""
    document = json.loads(path.read_text())
    m, r = document["machine"], document["result"]
    lines = [
        f"`{path.relative_to(BENCH)}`: {m['cpu']}; {r['images']} crops of {r['megapixels_each']:.2f} MP, "
        f"colour + position, median of {document['repeats']}; {m['date']}.",
        "",
        "| device | one call per image | `dbscan_images` (one pass) | same labels |",
        "| --- | --- | --- | --- |",
    ]
    for device in ("gpu", "cpu"):
        if f"{device}_batched_s" in r:
            same = "yes" if r[f"{device}_identical"] else "NO"
            lines.append(
                f"| {device} | {r[f'{device}_one_by_one_images_per_s']:.1f} images/s "
                f"| {r[f'{device}_batched_images_per_s']:.1f} images/s | {same} |"
            )
    return "\n".join(lines)


def serve_table(path: Path) -> str:
    """The HTTP service under load (`bench/serve_load.py`)."""
    document = json.loads(path.read_text())
    m, memory = document["machine"], document["memory"]
    lines = [
        f"`{path.relative_to(BENCH)}`: {m['cpu']}; server on {document['server_device']}, JPEG uploads of Grace "
        f"Hopper's portrait tiled to size, default options (lab, xy_scale 0.01); {m['date']}.",
        "",
        "| image | clients | requests | requests/s | p50 latency | p99 latency | statuses |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in document["rows"]:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
        lines.append(
            f"| {r['megapixels']:g} MP | {r['clients']} | {r['requests']} | {r['requests_per_s']:.2f} "
            f"| {seconds(r['p50_ms'] / 1e3)} | {seconds(r['p99_ms'] / 1e3)} | {statuses} |"
        )
    lines += [
        "",
        f"Server memory (RSS): {memory['ready_mib']:.0f} MiB once ready, "
        + ", ".join(f"{r['server_rss_after_mib']:.0f}" for r in document["rows"])
        + f" MiB after each run, {memory['after_all_mib']:.0f} MiB after all {memory['requests']} requests.",
    ]
    return "\n".join(lines)


def segmenters_table(path: Path) -> str:
    """gpuseg beside scikit-image's SLIC and Felzenszwalb (`bench/segmenters.py`)."""
    document = json.loads(path.read_text())
    m, rows = document["machine"], document["rows"]
    cases = sorted({(r["megapixels"], r["noise"]) for r in rows})
    lines = [
        f"`{path.relative_to(ROOT)}`: {m['cpu']}; scikit-image {m['scikit-image']}; {document['scenes']} "
        f"scenes per column, time the median of {document['repeats']} runs; {m['date']}.",
        "",
        "| method | " + " | ".join(f"{mp:.2f} MP, noise {noise:g}: time, ARI" for mp, noise in cases) + " |",
        "| --- |" + " --- |" * len(cases),
    ]
    for method in dict.fromkeys(r["method"] for r in rows):
        cells = []
        for case in cases:
            (r,) = [r for r in rows if r["method"] == method and (r["megapixels"], r["noise"]) == case]
            cells.append(f"{seconds(r['median_s'])}, {r['ari_median']:.2f}")
        lines.append(f"| `{rows[[r['method'] for r in rows].index(method)]['call']}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def page_table(path: Path) -> str:
    """The interactive page: control change to result, and the server's memory (`bench/page_latency.py`)."""
    document = json.loads(path.read_text())
    m, lat, mem = document["machine"], document["latency"], document["memory"]
    h, w = document["photo"]["shape"][:2]
    rss = mem["rss_mib_by_pages"]
    lines = [
        f"`{path.relative_to(ROOT)}`: {m['cpu']}, server on {document['device']}; {m['date']}.",
        "",
        "| measure | result |",
        "| --- | --- |",
        f"| control change to new picture on the page, {w}x{h} photo ({w * h / 1e6:.2f} MP), {lat['moves']} eps "
        f"moves by keyboard | median {seconds(lat['median_s'])}, 90th percentile {seconds(lat['p90_s'])}, "
        f"max {seconds(lat['max_s'])} |",
        f"| server memory over {mem['pages']} pages (upload + 10 eps moves each) | "
        + ", ".join(f"{pages} pages: {mib:.0f} MiB" for pages, mib in rss)
        + " |",
    ]
    return "\n".join(lines)


def chunked_table(folder: Path) -> str:
    """Large images in chunks and a folder on Dask workers (`bench/chunked.py`)."""
    tiff = json.loads((folder / "tiff64.json").read_text())["result"]
    giga = json.loads((folder / "giga.json").read_text())["result"]
    runs = json.loads((folder / "folder.json").read_text())["result"]

    def side(result: dict) -> str:
        n = int(round(result["pixels"] ** 0.5))
        return f"{n}x{n}"

    def chunks(run: dict) -> str:
        c = run["chunking"]
        return f"{c['chunks']} chunks of {c['chunk']} px, in one process"

    memory, chunked = tiff["in_memory"], tiff["chunked"]
    same = "identical" if tiff["identical_labels"] else "DIFFERENT"
    lines = [
        "| case | run | wall time | peak RSS | labels |",
        "| --- | --- | --- | --- | --- |",
        f"| 64 MP tiled TIFF ({side(tiff)}) | in memory (`segment`) | {seconds(memory['wall_s'])} "
        f"| {memory['peak_rss_mib']:.0f} MiB | the reference |",
        f"| 64 MP tiled TIFF ({side(tiff)}) | {chunks(chunked)} | {seconds(chunked['wall_s'])} "
        f"| {chunked['peak_rss_mib']:.0f} MiB | {same} (peak {tiff['peak_ratio_chunked_to_memory']:.2f}x the "
        "in-memory run's) |",
        f"| 1 gigapixel tiled TIFF ({side(giga)}) | {chunks(giga['chunked'])} | {seconds(giga['chunked']['wall_s'])} "
        f"| {giga['chunked']['peak_rss_mib']:.0f} MiB | {giga['chunked']['n_clusters']} clusters; in memory: refused |",
    ]
    one = runs["runs"]["1"]["wall_s"]
    for workers, run in sorted(runs["runs"].items()):
        speed = f" ({one / run['wall_s']:.2f}x one worker's speed)" if workers != "1" else ""
        lines.append(
            f"| folder of {runs['images']} JPEGs of {runs['megapixels_each']} MP | LocalCluster, {workers} worker(s) "
            f"| {seconds(run['wall_s'])}{speed} | - | - |"
        )
    return "\n".join(lines)


def replace_between(path: Path, marker: str, text: str) -> None:
    source = path.read_text()
    pattern = re.compile(rf"(<!-- {marker} -->\n)(?:.*?\n)?(<!-- /{marker} -->)", re.S)
    if not pattern.search(source):
        raise SystemExit(f"{path}: no <!-- {marker} --> ... <!-- /{marker} --> section")
    path.write_text(pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), source))


def main() -> None:
    suite = json.loads(CPU_SUITE.read_text())
    gpu_runs = sorted(RESULTS.glob("gpu_check_*.json"))
    cpu_text = suite_table(suite)
    gpu_text = gpu_table(gpu_runs[-1])
    readme = readme_table(suite, gpu_runs[-1])
    print(readme, cpu_text, gpu_text, sep="\n\n")
    pipeline_text = pipeline_table(PIPELINE)
    batch_text = batch_table(BATCH)
    serve_text = serve_table(SERVE)
    segmenters_text = segmenters_table(SEGMENTERS)
    page_text = page_table(PAGE)
    chunked_text = chunked_table(CHUNKED)
    print(pipeline_text, batch_text, serve_text, segmenters_text, page_text, chunked_text, sep="\n\n")
    if "--write" in sys.argv:
        replace_between(ROOT / "README.md", "perf-table", readme)
        replace_between(BENCH / "README.md", "cpu-suite", cpu_text)
        replace_between(BENCH / "README.md", "gpu-latest", gpu_text)
        replace_between(BENCH / "README.md", "pipeline", pipeline_text)
        replace_between(BENCH / "README.md", "batch", batch_text)
        replace_between(BENCH / "README.md", "serve", serve_text)
        replace_between(ROOT / "README.md", "segmenters", segmenters_text)
        replace_between(BENCH / "README.md", "segmenters", segmenters_text)
        replace_between(BENCH / "README.md", "page", page_text)
        replace_between(ROOT / "README.md", "chunked-table", chunked_text)
        replace_between(BENCH / "README.md", "chunked-results", chunked_text)


if __name__ == "__main__":
    main()
