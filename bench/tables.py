"""Markdown tables of the committed results (bench/results/*.json), for bench/README.md.

python bench/tables.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(RESULTS.parents[1]))


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
    lines += ["", f"Correctness: {same} of {len(checks)} checks identical ("]
    lines[-1] += "; ".join(f"{c['case']}: {c.get('reference', 'cpu engine')}" for c in checks) + ")."
    seg = r.get("segment")
    if seg:
        stages = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in seg["timings_s"].items())
        lines += ["", f"Whole `segment` of a {seg['megapixels']} MP PNG on the {seg['device'].upper()}: {stages}."]
    return "\n".join(lines)


def main() -> None:
    from bench.cpu_bench import markdown

    cpu = RESULTS / "cpu_bench.json"
    if cpu.exists():
        print(markdown(json.loads(cpu.read_text())))
        print()
    for path in sorted(RESULTS.glob("gpu_check_*.json")):
        print(gpu_table(path))
        print()


if __name__ == "__main__":
    main()
