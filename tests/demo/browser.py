"""Headless Chromium for the page tests: Debian's ``chromium`` and ``chromium-driver``, driven by Selenium."""

from __future__ import annotations

import shutil
import time
from typing import Any, Iterator

import pytest


def chromium_driver() -> Iterator[Any]:
    """A headless Chromium WebDriver that records the console; skips when the browser is not installed."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="browser tests drive Chromium with selenium")
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("browser tests need Debian's chromium and chromium-driver (make test installs them)")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio",
                     "--autoplay-policy=no-user-gesture-required", "--window-size=1200,1600"):
        options.add_argument(argument)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def wait_for(driver: Any, script: str, timeout: float = 30.0) -> Any:
    """Poll ``script`` (JavaScript returning a value) until it is truthy; AssertionError after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")
