"""Requests per second and latency of ``gpuseg serve`` under concurrent clients, and its memory over the run.

    PYTHONPATH=. python bench/serve_load.py OUT_DIR [--sizes 0.25,2] [--clients 4,16] [--requests 150,100]
                                                    [--device auto]

Starts the real server (``python -m gpuseg serve``) on a free loopback port, waits until it is ready, then for
each image size sends one request that is not timed, and for each number of clients that size's count of
``POST /v1/segment`` requests (a JPEG of Grace Hopper's portrait tiled to size, quality 90; the default
options), each client sending its next request when its last one is answered. Records requests/s, p50 and
p99 latency and the statuses, and the server's resident memory (RSS) once ready and after every run. With
the default counts the server answers 502 requests in all. Writes OUT_DIR/serve_load.json and prints a
table. Loopback only; every request has a time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REQUEST_TIMEOUT_S = 300


def jpeg_of(megapixels: float) -> bytes:
    import cv2

    from gpuseg.benchmarks.suite import photo_image
    from gpuseg.data import tiled

    image = tiled(photo_image(), megapixels)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


async def load(url: str, data: bytes, clients: int, requests: int) -> dict:
    """``requests`` requests from ``clients`` clients at once; requests/s, latency percentiles, statuses."""
    import httpx

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    next_request = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for _ in next_request:
            start = time.perf_counter()
            response = await http.post("/v1/segment", files={"image": ("photo.jpg", data, "image/jpeg")})
            latencies.append(time.perf_counter() - start)
            statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": requests,
        "statuses": statuses,
        "seconds": round(wall, 3),
        "requests_per_s": round(requests / wall, 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


def rss_mib(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def measure(sizes: list[float], clients: list[int], counts: list[int], device: str, log_path: Path) -> dict:
    """The load runs on a fresh server: one row per (size, clients), and the server's memory."""
    import httpx

    from gpuseg.benchmarks.suite import machine
    from gpuseg.serve.process import served

    images = {mp: jpeg_of(mp) for mp in sizes}
    rows, memory = [], {}
    with served("--device", device, log_path=log_path) as (url, proc):
        memory["ready_mib"] = rss_mib(proc.pid)
        for mp, count in zip(sizes, counts, strict=True):
            asyncio.run(load(url, images[mp], 1, 1))  # not timed: the first request of a size
            for n in clients:
                row = {"megapixels": mp, "upload_bytes": len(images[mp])}
                row.update(asyncio.run(load(url, images[mp], n, count)))
                row["server_rss_after_mib"] = rss_mib(proc.pid)
                rows.append(row)
                print(json.dumps(row), flush=True)
        memory["after_all_mib"] = rss_mib(proc.pid)
        memory["requests"] = sum(r["requests"] for r in rows) + len(sizes)
        info = httpx.get(f"{url}/v1/info").json()
    return {
        "machine": machine(),
        "server_device": f"{info['device']} ({info['device_name']})",
        "memory": memory,
        "rows": rows,
    }


def table(document: dict) -> str:
    lines = [f"{'MP':>5} {'clients':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}  statuses"]
    for r in document["rows"]:
        lines.append(
            f"{r['megapixels']:>5g} {r['clients']:>7} {r['requests_per_s']:>7.2f} {r['p50_ms']:>8.0f} "
            f"{r['p99_ms']:>8.0f}  {r['statuses']}"
        )
    memory = document["memory"]
    lines.append(
        f"server RSS: {memory['ready_mib']} MiB ready, {memory['after_all_mib']} MiB after {memory['requests']}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--sizes", default="0.25,2", help="megapixels, comma-separated")
    parser.add_argument("--clients", default="4,16", help="concurrent clients, comma-separated")
    parser.add_argument("--requests", default="150,100", help="requests per run, for each size")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    sizes = [float(v) for v in args.sizes.split(",")]
    clients = [int(v) for v in args.clients.split(",")]
    counts = [int(v) for v in args.requests.split(",")]
    if len(counts) != len(sizes):
        parser.error("--requests needs one count per size")
    args.out.mkdir(parents=True, exist_ok=True)
    document = measure(sizes, clients, counts, args.device, args.out / "server.log")
    path = args.out / "serve_load.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(table(document))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
