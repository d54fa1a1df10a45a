"""ns-viewer in a real browser: headless Chromium (Debian's chromium and chromium-driver, which
scripts/setup.sh installs) driven by selenium opens the viewer on the small language run, as a user
would: the first image, a typed query, the relevancy output, the stream selector, the time slider.
What the page shows is read back from screenshots and compared with the scene's ground truth.
Screenshots and timings are kept under test-artefacts/viewer/. Select with `-m browser`."""

import json
import os
import shutil
import signal
import subprocess
import time
from io import BytesIO
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image
from test_divff_end_to_end import BIN

from divff_nerfstudio.utils.headless_browser import free_port, listening, missing_browser, open_page

pytestmark = pytest.mark.browser

ARTEFACTS = Path(__file__).resolve().parents[1] / "test-artefacts" / "viewer"
WINDOW = (1200, 800)
POLL_S = 0.2
NEW_MAP = 10.0
"""The mean change (grey levels) that tells one query's or stream's map from another's: those differ by
about 60 here, while the same map drawn again differs by up to about 2.6 (the viewer's JPEG quality
40 while it renders and 75 at rest, its low-resolution preview, a re-render). A threshold of 1 let a
re-sent "hand" image pass for the green cube's."""


@pytest.fixture(scope="module")
def viewer(language_run):
    """ns-viewer on loopback, as the README starts it; yields (url, its log file)."""
    if missing_browser():
        pytest.fail(missing_browser())
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    ARTEFACTS.mkdir(parents=True)
    port, log = free_port(), ARTEFACTS / "ns-viewer.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(BIN / "ns-viewer"), "--load-config", str(language_run), "--viewer.websocket-host", "127.0.0.1", "--viewer.websocket-port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
    try:
        deadline = time.time() + 180
        while not listening(port):
            assert process.poll() is None and time.time() < deadline, f"ns-viewer did not start:\n{log.read_text()[-3000:]}"
            time.sleep(POLL_S)
        yield f"http://127.0.0.1:{port}", log
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser(viewer):
    driver = open_page(viewer[0], WINDOW)
    yield driver
    driver.quit()


class Page:
    """What the user sees and does: the rendered view (the canvas left of the panel) and the
    panel's controls, found by their labels."""

    def __init__(self, driver):
        self.driver = driver

    def screenshot(self, name: Optional[str] = None) -> np.ndarray:
        image = Image.open(BytesIO(self.driver.get_screenshot_as_png())).convert("RGB")
        if name:
            image.save(ARTEFACTS / f"{name}.png")
        return np.asarray(image)

    def view(self) -> Optional[np.ndarray]:
        """The 3D view (the canvas under a point well inside it), None while the page loads."""
        tag, *box = self.driver.execute_script("const e = document.elementFromPoint(40, 200); const r = e.getBoundingClientRect(); return [e.tagName, r.left, r.top, r.right, r.bottom];")
        if tag != "CANVAS":
            return None
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        return self.screenshot()[y0:y1, x0:x1].astype(np.float32)

    def resolution(self) -> str:
        return self.driver.execute_script("const m = [...document.querySelectorAll('p')].find(p => p.textContent.includes('Resolution:')); return m ? m.textContent : '';")

    def settled(self, before: Optional[np.ndarray] = None, min_change: float = NEW_MAP, timeout: float = 240) -> np.ndarray:
        """The view once it differs from `before` (mean absolute difference over min_change), the
        full-size render has arrived (the status line names the panel's max resolution) and two
        looks in a row agree."""
        deadline, last = time.time() + timeout, None
        while time.time() < deadline:
            looked, now = time.time(), self.view()
            if now is None:
                time.sleep(POLL_S)
                continue
            if last is None or last.shape != now.shape or np.abs(now - last).mean() >= 0.5:
                self.arrived = looked  # when the image finally shown was first seen, to within a look
            changed = before is None or now.shape != before.shape or np.abs(now - before).mean() > min_change
            if changed and "512x" in self.resolution().replace("×", "x") and last is not None and last.shape == now.shape and np.abs(now - last).mean() < 0.5:
                return now
            last = now
            time.sleep(POLL_S)
        raise AssertionError(f"the view did not settle in {timeout} s (status: {self.resolution()!r})")

    def control(self, label: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']/following::input[not(@type='hidden')][1]")

    def click(self, text: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.XPATH, f"//button[normalize-space()='{text}']").click()

    def pick(self, label: str, option: str, timeout: float = 120) -> None:
        """Opens a dropdown and picks an option; outputs appear as renders carry them, so retry."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        deadline = time.time() + timeout
        while True:
            box = self.control(label)
            box.click()
            time.sleep(POLL_S)
            chosen = [o for o in self.driver.find_elements(By.CSS_SELECTOR, "[role=option]") if o.text.strip() == option]
            if chosen:
                chosen[0].click()
                return
            box.send_keys(Keys.ESCAPE)
            assert time.time() < deadline, f"{label!r} never offered {option!r}"
            time.sleep(2)


    def slide_to_end(self, label: str, timeout: float = 30) -> None:
        """Moves a slider to its maximum, again until the page says it is there: in one try of the
        time slider the view never changed after the key press."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        thumb = self.driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']/following::*[@role='slider'][1]")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", thumb)
        deadline = time.time() + timeout
        while thumb.get_attribute("aria-valuenow") != thumb.get_attribute("aria-valuemax"):
            assert time.time() < deadline, f"{label!r} stayed at {thumb.get_attribute('aria-valuenow')}"
            thumb.click()
            thumb.send_keys(Keys.END)
            time.sleep(POLL_S)


def decode_turbo(view: np.ndarray) -> np.ndarray:
    """The [0, 1] values behind nerfstudio's default colour map for one-channel outputs (turbo):
    the nearest of its 256 colours."""
    from matplotlib import colormaps

    lut = colormaps["turbo"](np.linspace(0, 1, 256))[:, :3] * 255
    flat = view.reshape(-1, 3)
    nearest = np.concatenate([((chunk[:, None] - lut[None]) ** 2).sum(-1).argmin(1) for chunk in np.array_split(flat, 64)])
    return (nearest / 255.0).reshape(view.shape[:2])


def in_view(scene: Path, image: np.ndarray, view_shape: tuple) -> tuple:
    """A training frame's image (or label map) as the 3D view shows it once opened at that frame's
    camera, and where the frame covers the view: the viewer matches the vertical field of view and
    fills the canvas' width, so each canvas pixel looks along a ray whose pixel in the frame follows
    from the intrinsics."""
    (fx, _, cx), (_, fy, cy), _ = json.loads((scene / "meta.json").read_text())["intrinsics"]
    h, w = view_shape
    step = 2 * (cy / fy) / h  # tangent of the angle per canvas pixel
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    u, v = (cx + fx * (xs - w / 2) * step).astype(int), (cy + fy * (ys - h / 2) * step).astype(int)
    covered = (u >= 0) & (u < image.shape[1]) & (v >= 0) & (v < image.shape[0])
    return image[np.clip(v, 0, image.shape[0] - 1), np.clip(u, 0, image.shape[1] - 1)], covered


def contrast(values: np.ndarray, mask: np.ndarray, valid: np.ndarray) -> tuple:
    keep = valid.copy()
    keep[-90:, :90] = False  # the axes gizmo and the logo in the view's corner
    return float(values[mask & keep].mean()), float(values[~mask & keep].mean())


def applied_queries(log: Path) -> list:
    return [line.split("relevancy of '", 1)[1].split("'", 1)[0] for line in log.read_text().splitlines() if "relevancy of '" in line]


def test_a_query_typed_in_the_browser_lights_up_the_hands(browser, viewer, small_scene):
    from selenium.webdriver.common.keys import Keys

    page, log = Page(browser), viewer[1]
    timings = {}
    page.settled()
    page.click("Hide Train Cams")  # their frustums would cover the render
    time.sleep(2)
    rgb = page.settled()
    page.screenshot("01_opened_at_a_training_camera")
    # the viewer opened at the first training camera: the image is that frame's, not the last one's
    meta = json.loads((small_scene / "meta.json").read_text())
    frames = [np.asarray(Image.open(small_scene / "frames" / meta["images"][str(i)]).convert("RGB"), dtype=np.float32) for i in (meta["ids_train"][0], meta["ids_train"][-1])]
    (seen_first, valid), (seen_last, _) = (in_view(small_scene, frame, rgb.shape[:2]) for frame in frames)
    error_first, error_last = (float(np.abs(rgb - seen)[valid].mean()) for seen in (seen_first, seen_last))
    assert error_first < 20 and error_first < 0.75 * error_last, (error_first, error_last)
    truth = json.loads((small_scene / "gt" / "scene.json").read_text())
    labels = np.asarray(Image.open(small_scene / "gt" / "labels" / f"{Path(meta['images'][str(meta['ids_train'][0])]).stem}.png"))
    hands = in_view(small_scene, labels, rgb.shape[:2])[0] == truth["actor_label"]

    # type a query: applied once, after typing paused, not per keystroke
    box = page.control("Text query")
    box.click()
    typed = time.time()
    box.send_keys("hand")
    deadline = time.time() + 60
    while "hand" not in applied_queries(log):
        assert time.time() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    timings["typing -> query applied (s)"] = time.time() - typed
    assert applied_queries(log) == ["hand"], "no query for 'h', 'ha', 'han'"

    page.pick("Output type", "relevancy")
    relevancy = page.settled(rgb)
    page.screenshot("02_relevancy_of_hand")
    inside, outside = contrast(decode_turbo(relevancy), hands, valid)
    assert inside > outside + 0.25, (inside, outside)

    # a second query on the same view: kept features, a relevancy pass only
    box = page.control("Text query")
    box.send_keys(Keys.CONTROL, "a")
    asked = time.time()
    box.send_keys("green cube")
    other = page.settled(relevancy)
    timings["new query on a rendered view -> full-size image (s, the 0.6 s typing pause included)"] = page.arrived - asked
    page.screenshot("03_relevancy_of_green_cube")
    assert applied_queries(log)[-1] == "green cube"

    # back to "hand", in the actor stream only: the hands stay, what the composite added elsewhere goes
    box = page.control("Text query")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("hand")
    back = page.settled(other)
    assert np.abs(back - relevancy).mean() < np.abs(back - other).mean(), "typed again, 'hand' drew another map"
    page.pick("Relevancy of", "actor")
    actor = page.settled(relevancy)
    page.screenshot("04_relevancy_of_hand_in_the_actor_stream")
    actor_in, actor_out = contrast(decode_turbo(actor), hands, valid)
    assert actor_in > actor_out + 0.25 and actor_out < outside, (actor_in, actor_out, outside)

    # the time slider: the same camera at the last frame's time, where the actor was then (the
    # small scene's camera and hands move little over its 20 frames: a small but real change)
    page.slide_to_end("Time")
    later = page.settled(actor, min_change=0.1)
    page.screenshot("05_actor_relevancy_at_the_last_frame")
    later_in, later_out = contrast(decode_turbo(later), hands, valid)
    assert later_in > later_out + 0.25, (later_in, later_out)
    (ARTEFACTS / "timings.json").write_text(json.dumps(timings, indent=1))
    print(json.dumps(timings, indent=1))
