"""The HTTP service through FastAPI's TestClient: every route, every error status, the token, the queue."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from conftest import PROMPTLY_S, png_claiming  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import gpuseg  # noqa: E402
from gpuseg.cli.app import app as cli_app  # noqa: E402
from gpuseg.data import shapes_image  # noqa: E402
from gpuseg.io.write import save_png
from gpuseg.serve import Settings, create_app  # noqa: E402

PARAMS = {"eps": 0.0523, "min_samples": 8, "color": "rgb", "xy_scale": 0.01}
TOKEN = "s3cret-token"


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "scene.png"
    save_png(path, shapes_image(36, 48, seed=5)[0])
    return path


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(token=TOKEN, max_upload_bytes=2**20, max_pixels=10**6))) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        deadline = time.monotonic() + 120
        while c.get("/v1/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        yield c


def post_image(client, data: bytes, **params):
    return client.post("/v1/segment", params={**PARAMS, **params}, files={"image": ("scene.png", data, "image/png")})


def test_health_ready_info_and_schema(client):
    assert client.get("/v1/health", headers={"Authorization": ""}).json() == {"status": "alive"}
    assert client.get("/v1/ready").json() == {"status": "ready", "reason": None}
    info = client.get("/v1/info").json()
    assert info["gpuseg"] == gpuseg.__version__ and info["device"] in ("cpu", "gpu")
    assert {e["name"] for e in info["engines"]} >= {"grid", "cells", "tree", "sklearn"}
    assert info["limits"]["max_pixels"] == 10**6
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/segment", "/v1/cluster", "/v1/health", "/v1/ready", "/v1/info", "/metrics"} <= set(paths)
    params = {p["name"] for p in paths["/v1/segment"]["post"]["parameters"]}
    assert params == {
        "eps", "min_samples", "color", "alpha", "xy_scale", "engine", "target_noise", "noise", "min_region", "format"
    }  # fmt: skip


def test_segment_labels_equal_the_library(client, image_file):
    expected = gpuseg.segment(image_file, **PARAMS)
    response = post_image(client, image_file.read_bytes())
    assert response.status_code == 200
    body = response.json()
    png = cv2.imdecode(np.frombuffer(base64.b64decode(body["labels_png"]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16
    np.testing.assert_array_equal(png.astype(np.int64) - 1, expected.labels)
    report = body["report"]
    assert list(report) == list(expected.report)
    for key in ("image_shape", "n_samples", "eps", "min_samples", "color", "xy_scale", "engine", "n_clusters"):
        assert report[key] == expected.report[key], key
    assert expected.report["n_clusters"] > 1


def test_segment_with_auto_eps_fill_and_min_region_equals_the_library(client, image_file):
    options = {"eps": "auto", "target_noise": 0.2, "noise": "fill", "min_region": 30}
    expected = gpuseg.segment(image_file, **{**PARAMS, **options})
    body = post_image(client, image_file.read_bytes(), **options).json()
    png = cv2.imdecode(np.frombuffer(base64.b64decode(body["labels_png"]), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(png.astype(np.int64) - 1, expected.labels)
    assert body["report"]["eps_search"] == expected.report["eps_search"]
    assert body["report"]["postprocess"]["min_region"] == 30 and png.min() >= 1  # no noise left


def test_segment_npy_and_a_raw_body(client, image_file):
    expected = gpuseg.segment(image_file, **{**PARAMS, "xy_scale": 0})
    response = client.post(
        "/v1/segment", params={**PARAMS, "xy_scale": 0, "format": "npy"}, content=image_file.read_bytes()
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-npy"
    labels = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, expected.labels)
    report = json.loads(response.headers["x-gpuseg-report"])
    assert report["xy_scale"] is None and report["n_clusters"] == expected.report["n_clusters"]


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 422, "empty"),
        (b"just some text, not an image\n", 415, "not an image"),
        (png_claiming(90000, 90000), 413, "8,100,000,000 pixels"),
        (png_claiming(1200, 1000), 413, "1,200,000 pixels"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", 415, "truncated"),
        (b"\x00" * (2**20 + 1), 413, "--max-upload-mb"),
    ],
    ids=["empty", "text", "90000x90000", "over-max-pixels", "header-cut", "over-max-upload"],
)
def test_bad_uploads(client, data, status, words):
    response = post_image(client, data)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_truncated_and_damaged_images_are_422(client, image_file):
    data = image_file.read_bytes()
    response = post_image(client, data[: len(data) // 2])
    assert response.status_code == 422 and "truncated" in response.json()["detail"]
    damaged = bytearray(data)
    damaged[60] ^= 0xFF  # inside the first IDAT: its CRC no longer matches
    response = post_image(client, bytes(damaged))
    assert response.status_code == 422 and "CRC" in response.json()["detail"]


def test_missing_field_and_damaged_form(client, image_file):
    response = client.post("/v1/segment", files={"picture": ("a.png", image_file.read_bytes(), "image/png")})
    assert response.status_code == 422 and "no field 'image'" in response.json()["detail"]
    response = client.post("/v1/segment", content=b"--x\r\nnot a part", headers={"Content-Type": "multipart/form-data"})
    assert response.status_code == 422 and "boundary" in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        (
            {"eps": -1},
            "eps='-1' must be a positive finite number from 1e-100 to 1e+100 (feature units), such as 0.055, or auto",
        ),
        ({"target_noise": 1.5, "eps": "auto"}, "target_noise='1.5' must be a fraction in [0, 1)"),
        ({"target_noise": 0.2}, "target_noise=0.2 chooses eps: use it with eps='auto'"),  # the library's words
        ({"noise": "drop"}, "noise='drop' is not one of keep, fill"),
        ({"min_region": -2}, "min_region='-2' must be an integer >= 0"),
        ({"eps": "nan"}, "eps='nan'"),
        ({"eps": "abc"}, "eps='abc'"),
        ({"min_samples": 0}, "min_samples='0'"),
        ({"color": "hsv"}, "color='hsv'"),
        ({"engine": "fast"}, "engine='fast'"),
        ({"xy_scale": -0.5}, "xy_scale='-0.5'"),
        ({"format": "tiff"}, "format='tiff'"),
        ({"min_sample": 3}, "min_sample='3': not a parameter of /v1/segment (its parameters: eps, min_samples"),
        ({"engine": "grid", "xy_scale": 0}, "engine='grid'"),  # the library's own ValueError
    ],
)
def test_bad_parameters_are_422_naming_them(client, image_file, params, words):
    response = post_image(client, image_file.read_bytes(), **params)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]


def test_server_healthy_after_bad_input(client, image_file):
    for data in (b"", b"text", png_claiming(90000, 90000), image_file.read_bytes()[:100]):
        assert post_image(client, data).status_code in (413, 415, 422)
    assert client.get("/v1/health").status_code == 200
    assert client.get("/v1/ready").status_code == 200
    assert post_image(client, image_file.read_bytes()).status_code == 200


def test_token(client, image_file):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        for method, path in (("get", "/v1/ready"), ("get", "/v1/info"), ("get", "/metrics")):
            response = getattr(client, method)(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
        response = client.post("/v1/segment", content=image_file.read_bytes(), headers=headers)
        assert response.status_code == 401
        assert client.get("/v1/health", headers=headers).status_code == 200
    assert client.get("/v1/info").status_code == 200


def test_cluster_npy_and_csv(client, rng):
    X = np.concatenate([rng.normal(0, 0.05, (60, 2)), rng.normal(1, 0.05, (60, 2)), rng.uniform(-2, 3, (10, 2))])
    expected = gpuseg.dbscan(X, eps=0.1, min_samples=5)
    buf = io.BytesIO()
    np.save(buf, X)
    response = client.post("/v1/cluster", params={"eps": 0.1, "min_samples": 5}, content=buf.getvalue())
    assert response.status_code == 200
    assert response.json()["labels"] == expected.tolist()
    assert response.json()["n_clusters"] == int(expected.max()) + 1
    text = "x,y\n" + "\n".join(f"{a:.17g},{b:.17g}" for a, b in X)
    response = client.post(
        "/v1/cluster", params={"eps": 0.1, "min_samples": 5}, content=text, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["labels"] == expected.tolist()


@pytest.mark.parametrize(
    ("body", "params", "status", "words"),
    [
        (b"", {"eps": 0.1, "min_samples": 5}, 422, "empty"),
        (b"1,2\n3,x\n", {"eps": 0.1, "min_samples": 5}, 422, "line 2, column 2"),
        (b"1,2\n3,nan\n", {"eps": 0.1, "min_samples": 5}, 422, "not a finite number"),
        (b"\x93NUMPY\x01\x00garbage", {"eps": 0.1, "min_samples": 5}, 422, "not a readable .npy"),
        (b"1,2\n", {"min_samples": 5}, 422, "eps: Field required"),
        (b"1,2\n", {"eps": 0, "min_samples": 5}, 422, "eps='0'"),
    ],
)
def test_cluster_bad_input(client, body, params, status, words):
    response = client.post("/v1/cluster", params=params, content=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_metrics(client, image_file):
    assert post_image(client, image_file.read_bytes()).status_code == 200
    assert post_image(client, b"").status_code == 422
    text = client.get("/metrics").text
    assert 'gpuseg_requests_total{route="/v1/segment",status="200"}' in text
    assert 'gpuseg_requests_total{route="/v1/segment",status="422"}' in text
    assert 'gpuseg_request_seconds_bucket{le="0.5",route="/v1/segment"}' in text
    assert "gpuseg_queue_depth 0.0" in text
    pixels = [line for line in text.splitlines() if line.startswith("gpuseg_pixels_clustered_total ")]
    assert pixels and float(pixels[0].split()[1]) >= 36 * 48


@pytest.fixture
def blocked():
    """An app whose device is held by a job until the test releases it; queue of one."""
    release = threading.Event()
    with TestClient(create_app(Settings(queue_size=1, warm_up=False, timeout_s=60))) as c:
        service = c.app.state.service
        started = threading.Event()
        service.jobs.submit(lambda: (started.set(), release.wait(30)))
        assert started.wait(10)
        yield c, service, release
        release.set()


def test_queue_full_is_503_with_retry_after_and_health_answers(blocked, image_file):
    client, service, release = blocked
    answers = {}
    waiting = threading.Thread(target=lambda: answers.update(first=post_image(client, image_file.read_bytes())))
    waiting.start()
    deadline = time.monotonic() + 10
    while service.jobs.depth < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service.jobs.depth == 2  # the blocking job runs, the request's job waits
    start = time.monotonic()
    assert client.get("/v1/health").status_code == 200
    assert time.monotonic() - start < PROMPTLY_S  # the job ahead holds the device for 30 s
    response = post_image(client, image_file.read_bytes())
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1 and "--queue" in response.json()["detail"]
    release.set()
    waiting.join(30)
    assert answers["first"].status_code == 200


def test_time_limit_is_504_and_the_job_never_runs(image_file):
    release = threading.Event()
    with TestClient(create_app(Settings(warm_up=False, timeout_s=0.3))) as client:
        service = client.app.state.service
        service.jobs.submit(lambda: release.wait(30))
        response = post_image(client, image_file.read_bytes())
        assert response.status_code == 504 and "did not run" in response.json()["detail"]
        release.set()
        deadline = time.monotonic() + 10
        while service.jobs.depth and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.jobs.depth == 0
        assert 'route="/v1/segment",status="504"' in client.get("/metrics").text
        assert "gpuseg_pixels_clustered_total 0.0" in client.get("/metrics").text


def test_settings_are_checked():
    for bad in ({"device": "tpu"}, {"queue_size": 0}, {"timeout_s": 0}, {"token": ""}, {"max_pixels": 0}):
        with pytest.raises(ValueError):
            Settings(**bad)


runner = CliRunner()


def test_serve_command_help_and_token_file(tmp_path):
    result = runner.invoke(cli_app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--host", "--port", "--device", "--token-file", "--max-upload-mb", "--max-pixels", "--queue"):
        assert option in result.output
    empty = tmp_path / "token"
    empty.write_text("\n")
    result = runner.invoke(cli_app, ["serve", "--token-file", str(empty)], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "is empty" in result.output
    result = runner.invoke(cli_app, ["serve", "--token-file", str(tmp_path / "missing")], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "cannot read it" in result.output


def test_a_streamed_body_over_the_limit_is_413(client, image_file):
    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(20):
            yield b"\x00" * 2**16

    response = client.post("/v1/segment", content=chunks())
    assert response.status_code == 413 and "at least" in response.json()["detail"]
    assert client.post("/v1/segment", params=PARAMS, content=iter([image_file.read_bytes()])).status_code == 200


def test_random_bytes_are_never_a_500(client, rng):
    heads = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBP"]
    for head in heads:
        for size in (0, 10, 200, 5000):
            data = head + rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            response = post_image(client, data)
            assert response.status_code in (413, 415, 422), (head, size, response.text)
    assert client.get("/v1/ready").status_code == 200


def test_a_run_over_the_memory_available_is_413(client, image_file, monkeypatch):
    import gpuseg._core.memory

    monkeypatch.setattr(gpuseg._core.memory, "available_memory", lambda: 10_000)
    response = post_image(client, image_file.read_bytes())
    assert response.status_code == 413 and "needs about" in response.json()["detail"]


def test_a_failed_warm_up_keeps_ready_503(monkeypatch):
    from gpuseg.serve.service import Service

    def fail(self):
        raise RuntimeError("no kernels today")

    monkeypatch.setattr(Service, "_warm_up", fail)
    with TestClient(create_app(Settings())) as c:
        deadline = time.monotonic() + 10
        while "failed" not in c.get("/v1/ready").text and time.monotonic() < deadline:
            time.sleep(0.01)
        response = c.get("/v1/ready")
        assert response.status_code == 503 and "no kernels today" in response.json()["reason"]
        assert c.get("/v1/health").status_code == 200


def test_device_gpu_without_one_fails_at_start():
    from gpuseg._core.device import gpu_status
    from gpuseg.errors import DeviceError

    if gpu_status().usable:
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="device='gpu'"):
        create_app(Settings(device="gpu"))
    result = runner.invoke(cli_app, ["serve", "--device", "gpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "--device gpu" in result.output
