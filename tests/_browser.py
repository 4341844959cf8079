"""Headless Chromium for the explain page tests (Debian's chromium and chromium-driver).

One browser per test module (the ``browser`` fixture in ``conftest.py``, which starts it
from here). Locally a missing browser skips with the reason; with ``CI`` set it
is a failure, so CI never skips these tests silently.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser tests need {reason} in CI (.ci/run installs chromium and "
                    "chromium-driver)", pytrace=False)
    pytest.skip(reason)


def start_browser(width: int = 1280, height: int = 900):
    """A headless Chromium with a fresh profile; returns ``(driver, profile_dir)``."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium (pip install selenium)")
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        _missing(f"{CHROMIUM} and {DRIVER} (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="rot180-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    return driver, profile


def stop_browser(driver, profile: str) -> None:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def severe(driver) -> list[str]:
    """The console's SEVERE entries since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
