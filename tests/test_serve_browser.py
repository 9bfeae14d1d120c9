"""`rfvideo serve` in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) loads the page from a server on 127.0.0.1, starts a stream, switches the prompt, and the page
draws frames and shows the new prompt.

The screenshot is kept as an artefact: in the test's tmp dir, or at $RFVIDEO_SERVE_SCREENSHOT when set
(e.g. docs/images/serve.png for the README).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
webdriver = pytest.importorskip("selenium.webdriver")

from rfvideo.serve import ServeSettings, background_server, create_app  # noqa: E402
from test_serve_app import factory, parts  # noqa: E402, F401  (the tiny real model, as a fixture)

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium / chromedriver not installed (apt-get install -y chromium chromium-driver)",
)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=900,1000",
)  # fmt: skip
CANVAS_SUM = """
const c = document.getElementById('video');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let s = 0; for (let i = 0; i < d.length; i++) s = (s * 31 + d[i]) % 1000000007;
return [s, window.rfvideoStats.framesDrawn];
"""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # see test_serve_app.py


def wait_until(cond: Callable[[], Any], what: str, limit_s: float = 90.0) -> Any:
    """Poll the page until `cond()` is truthy (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + limit_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_browser_streams_draws_and_switches_prompt(parts: Any, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    p1, p2 = "a red square moving left", "a blue square moving up"
    app = create_app(factory(parts), ServeSettings(max_ahead=2))
    with background_server(app) as url:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        try:
            driver.get(url + "/")
            status = driver.find_element(By.ID, "status")
            wait_until(lambda: status.text == "connected", "the socket to open")
            box = driver.find_element(By.ID, "prompt")
            box.clear()
            box.send_keys(p1)
            driver.find_element(By.ID, "start").click()
            stats = lambda: driver.execute_script("return window.rfvideoStats")  # noqa: E731
            wait_until(lambda: stats()["chunksDrawn"] >= 2, "two chunks drawn")
            sum1, n1 = driver.execute_script(CANVAS_SUM)
            box.clear()
            box.send_keys(p2)
            driver.find_element(By.ID, "switch").click()
            wait_until(lambda: stats()["lastPrompt"] == p2, "a chunk of the second prompt drawn")
            wait_until(lambda: driver.execute_script(CANVAS_SUM)[1] > n1, "more frames drawn")
            sum2, _ = driver.execute_script(CANVAS_SUM)
            assert sum1 != sum2  # the canvas shows new pixels
            assert status.text.endswith(f"prompt: {p2}")
            assert int(driver.find_element(By.ID, "chunk").text) >= 2
            assert driver.find_element(By.ID, "ttff").text.endswith(" s")
            assert driver.find_element(By.ID, "error").text == ""
            shot = Path(os.environ.get("RFVIDEO_SERVE_SCREENSHOT", tmp_path / "serve.png"))
            shot.parent.mkdir(parents=True, exist_ok=True)
            assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 0
            print(f"screenshot: {shot}")
            # the cap on prompt length is shown on the page
            box.clear()
            box.send_keys("x" * 201)
            driver.find_element(By.ID, "switch").click()
            err = driver.find_element(By.ID, "error")
            wait_until(lambda: "the limit is 200" in err.text, "the prompt-length error on the page")
            driver.find_element(By.ID, "stop").click()
            wait_until(lambda: driver.find_element(By.ID, "start").is_enabled(), "the stream to stop")
        finally:
            driver.quit()
    assert app.state.server.metrics.snapshot()["active_streams"] == 0
