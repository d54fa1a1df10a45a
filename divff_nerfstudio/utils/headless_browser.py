"""A viewer on loopback and a page of it in the system's headless Chromium, for the viewer's tests
and benchmark: Debian's `chromium` and `chromium-driver` (scripts/setup.sh installs them), driven
by selenium, so no browser is ever downloaded."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Tuple

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def free_port() -> int:
    """A loopback port nothing listens on now, for an ns-viewer to serve."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something (the viewer, once started) accepts connections on the loopback port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def missing_browser() -> str:
    """Why no page can be opened here, or "" when one can."""
    if shutil.which(str(CHROMIUM)) is None or shutil.which(str(DRIVER)) is None:
        return f"{CHROMIUM} and {DRIVER} are needed: bash scripts/setup.sh installs them (Debian chromium, chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is needed: pip install -e '.[test]' (scripts/setup.sh does)"
    return ""


def open_page(url: str, window: Tuple[int, int] = (1200, 800)):
    """A selenium driver showing `url`; WebGL runs on SwiftShader (no GPU), root needs no sandbox."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={window[0]},{window[1]}", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(str(DRIVER)))
    driver.get(url)
    return driver
