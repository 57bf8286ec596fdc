"""The interactive page, measured: from a control's change to the updated result on the page, in a real
browser, and the server's memory over many pages.

    PYTHONPATH=. python bench/page_latency.py OUT_DIR [--moves 20] [--pages 100] [--device cpu]

1. Latency: `gpuseg serve` on a loopback port, headless Chromium (Selenium) opens the page, uploads Grace
   Hopper's portrait (matplotlib's sample data, 600 x 512 = 0.31 MP) and moves eps with the keyboard
   ``moves`` times, waiting for each result; the page records, for each, the milliseconds from the key press
   to the new picture decoded on the page (``#result[data-latency-ms]``). Median, 90th percentile and max.
2. Memory: ``pages`` pages, each uploading the photo (a session) and moving eps ten times, through the
   page's own routes (httpx), with the server's resident memory read from /proc before, every ten pages and
   after. The page cache keeps at most 32 images, so memory should stop growing once it is full.

Writes OUT_DIR/page.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def latency(url: str, photo: Path, moves: int) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    result = lambda: driver.find_element(By.ID, "result")  # noqa: E731
    try:
        driver.get(url)
        driver.find_element(By.ID, "image").send_keys(str(photo))
        WebDriverWait(driver, 120).until(lambda d: result().get_attribute("data-state") == "ready")
        eps = driver.find_element(By.ID, "eps")
        driver.execute_script("arguments[0].focus()", eps)
        seconds = []
        for move in range(moves):
            before = result().get_attribute("data-request")
            eps.send_keys(Keys.ARROW_RIGHT if move % 2 == 0 else Keys.ARROW_LEFT)
            WebDriverWait(driver, 60, poll_frequency=0.01).until(
                lambda d, before=before: (
                    result().get_attribute("data-request") != before and result().get_attribute("data-state") == "ready"
                )
            )
            seconds.append(float(result().get_attribute("data-latency-ms")) / 1e3)
        figures = {i: driver.find_element(By.ID, i).text for i in ("clusters", "noise", "cluster-time", "engine")}
    finally:
        driver.quit()
    return {
        "moves": moves,
        "median_s": float(np.median(seconds)),
        "p90_s": float(np.percentile(seconds, 90)),
        "max_s": float(np.max(seconds)),
        "last_figures": figures,
    }


def memory(url: str, pid: int, photo: Path, pages: int) -> dict:
    import httpx

    data = photo.read_bytes()
    samples = [(0, rss_mib(pid))]
    with httpx.Client(base_url=url, timeout=120) as client:
        for page in range(1, pages + 1):
            session = client.post("/v1/sessions", files={"image": (photo.name, data, "image/png")}).json()
            for move in range(10):
                answer = client.get(f"/v1/sessions/{session['id']}/segment", params={"eps": 0.05 + 0.001 * move})
                answer.raise_for_status()
            if page % 10 == 0:
                samples.append((page, rss_mib(pid)))
    return {"pages": pages, "rss_mib_by_pages": samples}


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import cv2

    from gpuseg.benchmarks.suite import machine, photo_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    from gpuseg.serve.process import served

    with (
        tempfile.TemporaryDirectory() as folder,
        served("--device", args.device, log_path=Path(folder) / "server.log") as (url, proc),
    ):
        pid = proc.pid
        photo = Path(folder).resolve() / "grace_hopper.png"
        cv2.imwrite(str(photo), cv2.cvtColor(photo_image(), cv2.COLOR_RGB2BGR))
        document = {
            "machine": machine(),
            "device": args.device,
            "photo": {"name": "grace_hopper (matplotlib)", "shape": list(photo_image().shape)},
            "latency": latency(url, photo, args.moves),
            "memory": memory(url, pid, photo, args.pages),
        }
    (args.out_dir / "page.json").write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({k: document[k] for k in ("latency", "memory")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
