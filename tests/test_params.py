"""One parameter table, every surface: each row of gpuseg.params.PARAMS walked with the extremes of each type
over Python, the command line, the HTTP API and the page's routes. A value is taken everywhere or refused
everywhere, in the table's words: a ValueError in Python, exit code 2 on the command line, 422 over HTTP;
never a crash, a traceback or a 500."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import gpuseg
from gpuseg.cli.app import app
from gpuseg.data import shapes_image
from gpuseg.engines import ENGINES
from gpuseg.io.write import save_png
from gpuseg.options import OutputOptions, SegmentOptions
from gpuseg.params import ENGINE_NAMES, PARAMS, Flag, parse_scheduler

EXTREMES = (0, -1, math.nan, math.inf, -math.inf, 1e308, 1e-308, 2**70, -(2**70), "abc", "", True)
"""Values of every kind: zero, negative, NaN, infinities, the largest and smallest floats, integers beyond int64,
text where numbers go, and a bool where a number goes."""
TEXTS = ("0", "-1", "nan", "inf", "-inf", "1e308", "1e-308", str(2**70), "abc", " ")
IMAGE = shapes_image(12, 16, seed=3)[0]
runner = CliRunner()


def refusal(param, value, *, text: bool = False) -> str | None:
    """The table's message for a value it refuses (None when it takes the value), given in Python or, with
    ``text``, as the command line's or a query string's text."""
    try:
        param.parse(value) if text else param.check(value)
    except ValueError as exc:
        return str(exc)
    return None


def test_every_engine_is_a_row_of_the_table():
    assert ("auto", *ENGINES) == ENGINE_NAMES


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_python_refuses_with_a_value_error_that_names_the_parameter(name):
    param = PARAMS[name]
    for value in EXTREMES:
        message = refusal(param, value)
        if message is not None:
            assert message.startswith(f"{name}=") and ("must be" in message or "is not" in message), message
    assert param.check(param.default) == param.default


SEGMENT_ROWS = [name for name in SegmentOptions.names() if name not in ("device", "max_memory")]


@pytest.mark.parametrize("name", SEGMENT_ROWS)
def test_segment_takes_what_the_table_takes_and_runs_it(name):
    """Every extreme is refused with the table's message, or segments the image: no overflow, no crash."""
    extra = {"eps": "auto"} if name == "target_noise" else {}
    for value in (*EXTREMES, PARAMS[name].rule.__dict__.get("high")):
        if value is None:
            continue
        message = refusal(PARAMS[name], value)
        if message is not None:
            with pytest.raises(ValueError) as refused:
                gpuseg.segment(IMAGE, device="cpu", **{**extra, name: value})
            assert str(refused.value) == message
        else:
            result = gpuseg.segment(IMAGE, device="cpu", **{**extra, name: value})
            assert result.labels.shape == IMAGE.shape[:2]


def test_the_largest_values_the_table_takes_still_cluster():
    big = PARAMS["eps"].rule.high
    assert gpuseg.segment(IMAGE, device="cpu", eps=big, min_samples=1).report["n_clusters"] == 1
    assert gpuseg.segment(IMAGE, device="cpu", xy_scale=PARAMS["xy_scale"].rule.high, min_samples=1).labels.max() >= 0
    many = PARAMS["min_samples"].rule.high
    assert (gpuseg.segment(IMAGE, device="cpu", min_samples=many).labels == -1).all()
    points = np.random.default_rng(0).random((50, 2))
    assert (gpuseg.dbscan(points, eps=big, min_samples=1) == 0).all()
    assert (gpuseg.dbscan(points, eps=PARAMS["eps"].rule.low * 10, min_samples=2) == -1).all()


@pytest.mark.parametrize("name", OutputOptions.names())
def test_output_options_refuse_with_the_table_message(name):
    for value in EXTREMES:
        message = refusal(PARAMS[name], value)
        if message is None:
            continue
        with pytest.raises(ValueError) as refused:
            OutputOptions(**{name: value})
        assert str(refused.value) == message


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("params") / "scene.png"
    save_png(path, IMAGE)
    return path


CLI_ROWS = [name for name, p in PARAMS.items() if "cli" in p.surfaces and not isinstance(p.rule, Flag)]


@pytest.mark.parametrize("name", CLI_ROWS)
def test_the_command_line_refuses_with_exit_2_and_the_table_message(name, image_file, tmp_path):
    param = PARAMS[name]
    extra = ["--eps", "auto"] if name == "target_noise" else []
    for i, text in enumerate(TEXTS):
        out = tmp_path / f"o{i}"
        args = ["segment", str(image_file), *extra, param.flag, text, "--out-dir", str(out), "--device", "cpu"]
        if name == "device":
            args = args[:-2]
        result = runner.invoke(app, args, env={"COLUMNS": "300"})
        assert "Traceback" not in result.output
        message = refusal(param, text, text=True)
        if message is None:
            assert result.exit_code in (0, 1), result.output  # taken: it ran (or failed as that image)
            continue
        assert result.exit_code == 2, (text, result.output)
        said = message.removeprefix(f"{name}={text!r}")
        assert f"error: {param.flag} {text!r}{said}" in " ".join(result.output.split()), result.output
        assert not out.exists()


@pytest.fixture(scope="module")
def service():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from gpuseg.serve import Settings, create_app

    with TestClient(create_app(Settings(device="cpu", warm_up=False))) as client:
        yield client


def png_bytes() -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(IMAGE, cv2.COLOR_RGB2BGR))[1].tobytes()


def assert_http(answer, param, text, extra_ok=(200,)):
    message = refusal(param, text, text=True)
    assert answer.status_code != 500, answer.text
    if message is None:
        assert answer.status_code in extra_ok, (text, answer.text)
    else:
        assert answer.status_code == 422, (text, answer.text)
        assert answer.json()["detail"] == message


HTTP_ROWS = [name for name, p in PARAMS.items() if "http" in p.surfaces]


@pytest.mark.parametrize("name", HTTP_ROWS)
def test_http_refuses_with_422_and_the_table_message(service, name):
    extra = {"eps": "auto"} if name == "target_noise" else {}
    for text in TEXTS:
        answer = service.post(
            "/v1/segment", params={**extra, name: text}, files={"image": ("scene.png", png_bytes(), "image/png")}
        )
        assert_http(answer, PARAMS[name], text)


@pytest.mark.parametrize("name", ["eps", "min_samples", "engine"])
def test_the_cluster_route_refuses_with_422_and_the_table_message(service, name):
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).random((30, 2)))
    for text in TEXTS:
        params = {"eps": "0.2", "min_samples": "3", name: text}
        answer = service.post("/v1/cluster", params=params, content=buffer.getvalue())
        assert_http(answer, PARAMS[name], text)
    auto = service.post("/v1/cluster", params={"eps": "auto", "min_samples": "3"}, content=buffer.getvalue())
    assert auto.status_code == 422 and "give a distance" in auto.json()["detail"]


PAGE_ROWS = [name for name, p in PARAMS.items() if "page" in p.surfaces]


@pytest.mark.parametrize("name", PAGE_ROWS)
def test_the_page_routes_refuse_with_422_and_the_table_message(service, name):
    opened = service.post("/v1/sessions", files={"image": ("scene.png", png_bytes(), "image/png")}).json()
    extra = {"eps": "auto"} if name == "target_noise" else {}
    for text in TEXTS:
        answer = service.get(f"/v1/sessions/{opened['id']}/segment", params={**extra, name: text})
        assert_http(answer, PARAMS[name], text)
        if name in ("view", "preview"):
            continue
        curve = service.get(f"/v1/sessions/{opened['id']}/k-distances", params={name: text})
        assert_http(curve, PARAMS[name], text)


def test_scheduler_strings():
    assert parse_scheduler("local") == ("local", None)
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("local-cuda") == ("local-cuda", None)
    assert parse_scheduler("tcp://10.0.0.5:8786") == ("address", "tcp://10.0.0.5:8786")
    for bad in ("locall", "local:0", "local:x", "http://host:1", "10.0.0.5:8786", ""):
        with pytest.raises(ValueError, match="local, local:N, local-cuda or tcp://HOST:PORT|whole number"):
            parse_scheduler(bad)
