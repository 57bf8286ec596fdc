"""The real server: `gpuseg serve` as a subprocess on a free loopback port, called concurrently with httpx."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import threading
import time

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # real servers in subprocesses

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from conftest import PROMPTLY_S, png_claiming  # noqa: E402

import gpuseg  # noqa: E402
from gpuseg.data import shapes_image  # noqa: E402
from gpuseg.io.write import save_png  # noqa: E402
from gpuseg.serve.process import served  # noqa: E402

PARAMS = {"eps": 0.0523, "min_samples": 8, "color": "rgb", "xy_scale": 0.01}
TOKEN = "live-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextlib.contextmanager
def running_server(tmp_path, *options: str):
    """`gpuseg serve` with the token, on a free loopback port, ready; SIGTERM when the block ends."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    log_path = tmp_path / f"server-{time.monotonic_ns()}.log"
    with served("--token-file", str(token_file), *options, log_path=log_path, token=TOKEN, ready_timeout=180) as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("live"), "--device", "cpu", "--max-pixels", "1000000") as running:
        yield running


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three PNG files of different sizes, with the labels gpuseg.segment gives each."""
    folder = tmp_path_factory.mktemp("images")
    out = []
    for k, (h, w) in enumerate([(40, 56), (72, 64), (90, 120)]):
        path = folder / f"scene{k}.png"
        save_png(path, shapes_image(h, w, seed=k)[0])
        out.append((path.read_bytes(), gpuseg.segment(path, **PARAMS).labels))
    return out


def labels_of(response) -> np.ndarray:
    png = base64.b64decode(response.json()["labels_png"])
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED).astype(np.int64) - 1


def test_48_requests_6_at_a_time(server, images):
    url, _ = server

    async def run() -> list:
        gate = asyncio.Semaphore(6)
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=120) as client:

            async def one(i: int):
                data, expected = images[i % len(images)]
                async with gate:
                    response = await client.post(
                        "/v1/segment", params=PARAMS, files={"image": (f"{i}.png", data, "image/png")}
                    )
                return response, expected

            return await asyncio.gather(*(one(i) for i in range(48)))

    answers = asyncio.run(run())
    assert [r.status_code for r, _ in answers] == [200] * 48
    for response, expected in answers:
        np.testing.assert_array_equal(labels_of(response), expected)
    metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
    assert not [line for line in metrics.splitlines() if 'route="/v1/segment",status="5' in line]


def test_bad_input_is_4xx_and_the_server_stays_healthy(server, images):
    url, proc = server
    good = images[0][0]
    bad = [
        (b"", {}, 422),
        (b"plain text\n", {}, 415),
        (good[: len(good) // 2], {}, 422),
        (png_claiming(90000, 90000), {}, 413),
        (good, {"eps": "-1"}, 422),
        (good, {"min_samples": "many"}, 422),
        (good, {"colour": "rgb"}, 422),
    ]
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        for data, params, status in bad:
            response = client.post("/v1/segment", params=params, files={"image": ("x.png", data, "image/png")})
            assert response.status_code == status, (params, response.text)
        assert client.post("/v1/segment", content=good, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(f"{url}/v1/ready").status_code == 401
        assert httpx.get(f"{url}/v1/health").status_code == 200
        assert client.get("/v1/ready").status_code == 200
        response = client.post("/v1/segment", params=PARAMS, files={"image": ("x.png", good, "image/png")})
        assert response.status_code == 200
        np.testing.assert_array_equal(labels_of(response), images[0][1])
    assert proc.poll() is None


def test_health_answers_while_clustering_and_sigterm_finishes_in_flight(tmp_path):
    path = tmp_path / "large.png"
    save_png(path, shapes_image(900, 1200, seed=3)[0])
    data = path.read_bytes()
    with running_server(tmp_path, "--device", "cpu") as (url, proc):
        answers: list = []

        def post() -> None:
            response = httpx.post(
                f"{url}/v1/segment", params={**PARAMS, "format": "npy"}, content=data, headers=AUTH, timeout=120
            )
            answers.append(response.status_code)

        threads = [threading.Thread(target=post) for _ in range(3)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the device works and a request waits behind it
            metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
            if "gpuseg_queue_depth 2.0" in metrics or "gpuseg_queue_depth 3.0" in metrics:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the three requests never reached the queue")
        assert httpx.get(f"{url}/v1/health", timeout=60).status_code == 200
        assert len(answers) < 3  # answered while the queue still held work, not after it
        proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(120)
        assert answers == [200, 200, 200]
        answered = time.monotonic()
        proc.wait(15)  # uvicorn ends by re-raising the signal once it has shut down
        assert proc.returncode in (0, -signal.SIGTERM)
        assert time.monotonic() - answered < PROMPTLY_S
