"""The page in a real browser: headless Chromium (Selenium) against `gpuseg serve` on a loopback port.

Skipped, with the reason, where Chromium or its driver is not found (`.ci/run` installs Debian's `chromium`
and `chromium-driver`). A screenshot of each test's last state is saved in test-artifacts/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("no Chromium or chromedriver found (apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_serve_live import TOKEN, running_server  # noqa: E402

import gpuseg  # noqa: E402
from gpuseg.params import PARAMS  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("page"), "--device", "cpu") as (url, _):
        yield url


@pytest.fixture
def browser(request):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1300,1100")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{request.node.name}.png"))
    driver.quit()


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple[Path, np.ndarray]:
    from skimage import data

    image = data.coffee()  # 600 x 400: a 0.24 MP photo
    path = tmp_path_factory.mktemp("photo") / "coffee.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path, image


def wait(driver, condition, seconds: float = 60):
    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda d: condition(d))


def by_id(driver, element_id: str):
    return driver.find_element(By.ID, element_id)


def upload_with_token(driver, url: str, path: Path) -> None:
    """Open the page, choose the image, give the token when the service asks for it, wait for the result."""
    driver.get(url)
    by_id(driver, "image").send_keys(str(path))
    wait(driver, lambda d: by_id(d, "token-row").is_displayed() and "Bearer" in by_id(d, "error").text)  # a 401
    by_id(driver, "token").send_keys(TOKEN, Keys.TAB)  # change: uploads again, with the token
    wait(driver, lambda d: by_id(d, "result").get_attribute("data-state") == "ready")


def shown_clusters(driver) -> int:
    text = by_id(driver, "clusters").text
    assert text.isdigit(), text
    return int(text)


def test_upload_move_eps_and_compare_with_segment(server, browser, photo):
    path, image = photo
    upload_with_token(browser, server, path)
    assert by_id(browser, "eps").get_attribute("value") == f"{PARAMS['eps'].default:g}"
    first = shown_clusters(browser)
    assert first == gpuseg.segment(image, device="cpu").report["n_clusters"]
    assert "full resolution 600×400" in by_id(browser, "resolution").text
    request = by_id(browser, "result").get_attribute("data-request")

    eps = by_id(browser, "eps")
    browser.execute_script("arguments[0].focus()", eps)  # a click would jump to where it lands
    for _ in range(10):  # the keyboard moves the slider: 10 steps of 0.0005
        eps.send_keys(Keys.ARROW_RIGHT)
    wait(
        browser,
        lambda d: (
            by_id(d, "result").get_attribute("data-state") == "ready"
            and by_id(d, "result").get_attribute("data-request") != request
            and float(by_id(d, "eps-value").text) == float(eps.get_attribute("value"))
        ),
    )
    value = float(eps.get_attribute("value"))
    assert value == pytest.approx(PARAMS["eps"].default + 10 * 0.0005)
    expected = gpuseg.segment(image, eps=value, device="cpu").report
    wait(browser, lambda d: shown_clusters(d) == expected["n_clusters"], 20)
    assert shown_clusters(browser) != first
    assert by_id(browser, "noise").text.startswith(f"{100 * expected['noise_fraction']:.1f}%")
    command = by_id(browser, "command").text
    assert f"--eps {value:.4f} --min-samples {PARAMS['min_samples'].default} --color lab" in command
    assert by_id(browser, "download-labels").get_attribute("download") == "coffee.labels.png"


def test_other_controls_noise_fill_and_colour_only(server, browser, photo):
    from selenium.webdriver.support.ui import Select

    path, image = photo
    upload_with_token(browser, server, path)
    request = by_id(browser, "result").get_attribute("data-request")
    Select(by_id(browser, "noise-mode")).select_by_value("fill")
    wait(browser, lambda d: by_id(d, "result").get_attribute("data-request") != request)
    wait(browser, lambda d: by_id(d, "result").get_attribute("data-state") == "ready")
    assert "(0.0% after fill)" in by_id(browser, "noise").text

    request = by_id(browser, "result").get_attribute("data-request")
    region = by_id(browser, "min-region")
    region.clear()
    region.send_keys("200", Keys.TAB)
    wait(browser, lambda d: by_id(d, "result").get_attribute("data-request") != request)
    wait(browser, lambda d: by_id(d, "result").get_attribute("data-state") == "ready")
    merged = gpuseg.segment(image, noise="fill", min_region=200, device="cpu").report["postprocess"]
    assert by_id(browser, "merged").text == f"({merged['n_clusters']} after merging)"
    assert by_id(browser, "command").text.endswith("--noise fill --min-region 200")
    request = by_id(browser, "result").get_attribute("data-request")
    region.clear()
    region.send_keys("0", Keys.TAB)
    wait(browser, lambda d: by_id(d, "result").get_attribute("data-request") != request)
    wait(browser, lambda d: by_id(d, "result").get_attribute("data-state") == "ready" and not by_id(d, "merged").text)

    request = by_id(browser, "result").get_attribute("data-request")
    xy = by_id(browser, "xy-scale")
    xy.clear()
    xy.send_keys("0", Keys.TAB)  # colour only: one cluster holds the photo, and the page says so
    wait(browser, lambda d: by_id(d, "result").get_attribute("data-request") != request)
    wait(browser, lambda d: by_id(d, "result").get_attribute("data-state") == "ready")
    expected = gpuseg.segment(image, xy_scale=None, noise="fill", device="cpu").report
    assert shown_clusters(browser) == expected["n_clusters"]
    assert "one cluster holds" in by_id(browser, "warnings").text


def test_a_large_image_is_previewed_while_dragging(server, browser, tmp_path):
    from gpuseg.data import shapes_image

    large = cv2.resize(shapes_image(300, 400, seed=3)[0], (1200, 900), interpolation=cv2.INTER_NEAREST)
    path = tmp_path / "large.png"
    cv2.imwrite(str(path), cv2.cvtColor(large, cv2.COLOR_RGB2BGR))
    upload_with_token(browser, server, path)
    dragging = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));"
    browser.execute_script(dragging, by_id(browser, "eps"), "0.07")  # a drag in progress: input, no change yet
    wait(browser, lambda d: by_id(d, "result").get_attribute("data-state") == "preview")
    assert by_id(browser, "resolution").text.startswith("preview")
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'));", by_id(browser, "eps"))  # released
    wait(browser, lambda d: by_id(d, "result").get_attribute("data-state") == "ready")
    assert "full resolution 1200×900" in by_id(browser, "resolution").text
    expected = gpuseg.segment(large, eps=0.07, device="cpu").report
    assert shown_clusters(browser) == expected["n_clusters"]


def test_errors_are_shown_in_the_service_words(server, browser, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    browser.get(server)
    browser.execute_script("document.getElementById('token').value = arguments[0]", TOKEN)  # the upload carries it
    by_id(browser, "image").send_keys(str(text))
    wait(browser, lambda d: by_id(d, "error").is_displayed())
    message = by_id(browser, "error").text
    assert "image" in message and "Bearer" not in message
    assert by_id(browser, "clusters").text == "-" and by_id(browser, "eps").is_displayed()  # never a blank page
