"""The interactive page's routes through FastAPI's TestClient, and the cache of uploaded images."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

import gpuseg  # noqa: E402
from gpuseg.data import shapes_image  # noqa: E402
from gpuseg.params import PARAMS  # noqa: E402
from gpuseg.serve import Settings, create_app  # noqa: E402
from gpuseg.serve.sessions import PREVIEW_PIXELS, SessionCache, SessionExpired  # noqa: E402


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture
def client():
    with TestClient(create_app(Settings(device="cpu", warm_up=False, page_sessions=3))) as c:
        yield c


@pytest.fixture
def scene():
    return shapes_image(120, 160, seed=5)[0]


def open_session(client, image, name="scene.png") -> dict:
    answer = client.post("/v1/sessions", files={"image": (name, png(image), "image/png")}, headers={"X-Filename": name})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_page_starts_from_the_library_defaults(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert f'id="eps" type="range" min="0.002" max="0.3" step="0.0005" value="{PARAMS["eps"].default:g}"' in html
    assert (
        f'id="min-samples" type="number" min="1" max="10000" step="1" value="{PARAMS["min_samples"].default}"' in html
    )
    assert f'value="{PARAMS["xy_scale"].default:g}"' in html and '<option value="lab" selected>' in html
    for element in ("image", "eps", "min-samples", "xy-scale", "color", "clusters", "noise", "result"):
        assert f'id="{element}"' in html
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere: works offline
    assert client.get("/static/page.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/page.css").status_code == 200
    assert client.get("/static/secret.py").status_code == 404


def test_a_session_reclusters_with_the_same_labels_as_segment(client, scene):
    opened = open_session(client, scene)
    assert (opened["width"], opened["height"], opened["preview"], opened["name"]) == (160, 120, None, "scene.png")
    for params in (
        {"eps": 0.05, "min_samples": 10, "color": "rgb", "xy_scale": 0.01},
        {"eps": 0.08, "min_samples": 10, "color": "rgb", "xy_scale": 0.02},  # same colours, another scale
        {"eps": 0.03, "min_samples": 5, "color": "lab", "xy_scale": 0, "noise": "fill"},
    ):
        answer = client.get(f"/v1/sessions/{opened['id']}/segment", params={**params, "view": "mean"})
        assert answer.status_code == 200, answer.text
        result = answer.json()
        options = {**params, "xy_scale": params["xy_scale"] or None}
        expected = gpuseg.segment(scene, device="cpu", **options)
        labels_png = cv2.imdecode(np.frombuffer(base64.b64decode(result["labels_png"]), np.uint8), cv2.IMREAD_UNCHANGED)
        assert (labels_png.astype(np.int64) - 1 == expected.labels).all()
        assert result["n_clusters"] == expected.report["n_clusters"] and not result["preview"]
        assert result["noise_fraction"] == expected.report["noise_fraction"]
        assert result["report"]["eps"] == params["eps"] and result["picture"].startswith("data:image/jpeg;base64,")
        picture = cv2.imdecode(np.frombuffer(base64.b64decode(result["picture"].split(",")[1]), np.uint8), 1)
        assert picture.shape[:2] == (120, 160)
    filled = client.get(
        f"/v1/sessions/{opened['id']}/segment", params={"noise": "fill", "eps": 0.03, "min_samples": 5}
    ).json()
    assert filled["shown_noise_fraction"] == 0.0 < filled["noise_fraction"]
    merged = client.get(f"/v1/sessions/{opened['id']}/segment", params={"noise": "fill", "min_region": 300}).json()
    expected = gpuseg.segment(scene, noise="fill", min_region=300, device="cpu").report
    assert merged["n_clusters"] == expected["n_clusters"]
    assert merged["shown_clusters"] == expected["postprocess"]["n_clusters"] < expected["n_clusters"]


def test_a_large_image_has_a_preview_clustered_with_the_same_parameters(client):
    image = cv2.resize(shapes_image(240, 320, seed=2)[0], (800, 600), interpolation=cv2.INTER_NEAREST)
    opened = open_session(client, image)
    w, h = opened["preview"]
    assert w * h <= PREVIEW_PIXELS * 1.01 and abs(w / h - 800 / 600) < 0.01
    params = {"eps": 0.06, "min_samples": 16, "color": "rgb", "xy_scale": 0.01}
    preview = client.get(f"/v1/sessions/{opened['id']}/segment", params={**params, "preview": True}).json()
    assert preview["preview"] and (preview["width"], preview["height"]) == (w, h)
    assert preview["report"] is None and preview["labels_png"] is None  # the full result comes on release
    small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    assert preview["n_clusters"] == gpuseg.segment(small, **params, device="cpu").report["n_clusters"]
    full = client.get(f"/v1/sessions/{opened['id']}/segment", params=params).json()
    assert not full["preview"] and (full["width"], full["height"]) == (800, 600)
    assert full["n_clusters"] == gpuseg.segment(image, **params, device="cpu").report["n_clusters"]


def test_the_k_distance_curve(client, scene):
    opened = open_session(client, scene)
    curve = client.get(f"/v1/sessions/{opened['id']}/k-distances", params={"min_samples": 10, "color": "rgb"}).json()
    suggestion = gpuseg.suggest_eps(scene, min_samples=10, color="rgb", xy_scale=PARAMS["xy_scale"].default)
    assert curve["knee_eps"] == suggestion.knee_eps and len(curve["k_distances"]) == 200
    assert curve["k_distances"] == sorted(curve["k_distances"])


def test_errors_in_the_service_words(client, scene):
    opened = open_session(client, scene)
    gone = client.get("/v1/sessions/not-an-id/segment")
    assert gone.status_code == 404 and "upload it again" in gone.json()["detail"]
    bad = client.get(f"/v1/sessions/{opened['id']}/segment", params={"eps": -1})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("eps='-1'")
    view = client.get(f"/v1/sessions/{opened['id']}/segment", params={"view": "sketch"})
    assert view.status_code == 422 and "view='sketch' is not one of overlay" in view.json()["detail"]
    text = client.post("/v1/sessions", files={"image": ("notes.png", b"just some words", "image/png")})
    assert text.status_code in (415, 422) and text.json()["detail"]
    empty = client.post("/v1/sessions", files={"image": ("empty.png", b"", "image/png")})
    assert 400 <= empty.status_code < 500


def test_the_page_needs_no_token_but_its_routes_do(scene):
    with TestClient(create_app(Settings(device="cpu", warm_up=False, token="s3cret"))) as c:
        assert c.get("/").status_code == 200 and c.get("/static/page.js").status_code == 200
        refused = c.post("/v1/sessions", files={"image": ("a.png", png(scene), "image/png")})
        assert refused.status_code == 401
        allowed = c.post(
            "/v1/sessions",
            files={"image": ("a.png", png(scene), "image/png")},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert allowed.status_code == 200


def test_the_cache_is_bounded_in_count_and_bytes_and_expires():
    now = [0.0]
    cache = SessionCache(max_sessions=3, max_bytes=10_000, ttl_s=60, clock=lambda: now[0])
    images = [np.full((20, 30, 3), k, np.uint8) for k in range(5)]  # 1,800 bytes each
    ids = [cache.add(image, f"{k}.png").id for k, image in enumerate(images)]
    assert len(cache) == 3 and len(set(ids)) == 5
    with pytest.raises(SessionExpired):
        cache.get(ids[0])  # the least recently used went first
    cache.get(ids[2])  # used: now the most recent
    cache.add(images[0], "again.png")
    with pytest.raises(SessionExpired):
        cache.get(ids[3])
    assert cache.get(ids[2]).name == "2.png"
    big = np.zeros((40, 60, 3), np.uint8)  # 7,200 bytes: the others make room
    cache.add(big, "big.png")
    assert cache.nbytes <= 10_000
    with pytest.raises(ValueError, match="page cache holds"):
        cache.add(np.zeros((100, 100, 3), np.uint8), "huge.png")
    now[0] = 61.0
    with pytest.raises(SessionExpired):
        cache.get(ids[2])
    assert len(cache) == 0 or all(now[0] - s.used <= 60 for s in cache._sessions.values())


def test_features_count_in_the_cache_bytes(scene):
    cache = SessionCache(max_sessions=4, max_bytes=2**20)
    session = cache.add(scene, "scene.png")
    before = cache.nbytes
    from gpuseg.features import build_features

    built = cache.features(session, "lab", "ignore", False, lambda: build_features(scene, xy_scale=None))
    assert cache.features(session, "lab", "ignore", False, lambda: pytest.fail("built twice")) is built
    assert cache.nbytes > before
