"""A real browser for the web page's tests: Debian's chromium, headless, driven by Selenium.

Its microphone is Chromium's fake capture device playing a WAV file (it loops the file), and
its downloads land in a directory the test reads. `ui-test.lan` resolves to 127.0.0.1 inside
this browser only: a page opened under that name is what a page opened from another machine
on the LAN is to the browser (not a secure context), without any network.
"""

from __future__ import annotations

import re
import time
import wave
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from conftest import ASSETS, REPO
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: A name for 127.0.0.1 that is not "localhost" or a loopback address, so not a secure origin.
LAN_NAME = "ui-test.lan"
#: The README and docs/web-page.md show these: taken by the test run that checks what they show.
SCREENSHOTS = REPO / "docs" / "screenshots"
WINDOW = (1000, 700)


def speech_clip(directory: Path, name: str = "weather") -> Path:
    """A committed clip with silence around it: the fake microphone loops the file, and the
    silence after the speech is the pause that ends the utterance."""
    with wave.open(str(ASSETS / f"{name}.wav"), "rb") as src:
        params = src.getparams()
        speech = src.readframes(src.getnframes())
    out = directory / f"{name}-mic.wav"
    with wave.open(str(out), "wb") as dst:
        dst.setparams(params)
        dst.writeframes(b"\0\0" * (params.framerate // 2) + speech + b"\0\0" * (params.framerate * 2))
    return out


def start_browser(microphone: Path, downloads: Path, allow_microphone: bool = True) -> webdriver.Chrome:
    """`allow_microphone=False`: every page's request for the microphone is refused, as a
    person who clicks "Block" refuses it."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--use-fake-ui-for-media-stream" + ("" if allow_microphone else "=deny"),
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        f"--host-resolver-rules=MAP {LAN_NAME} 127.0.0.1",
        f"--window-size={WINDOW[0]},{WINDOW[1] + 200}",
        "--lang=en-US",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.set_capability("acceptInsecureCerts", True)  # the HTTPS test's self-signed certificate
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


class Page:
    """The browser, seen the way a person sees the page: elements, their text, the console."""

    def __init__(self, driver: webdriver.Chrome, downloads: Path) -> None:
        self.driver = driver
        self.downloads = downloads

    def open(self, url: str, viewport: tuple[int, int] = WINDOW, phone: bool = False) -> None:
        """Load `url` in a viewport of exactly `viewport` CSS pixels (`phone`: as a phone shows it)."""
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": viewport[0], "height": viewport[1], "deviceScaleFactor": 1, "mobile": phone},
        )
        self.driver.get("about:blank")  # a fresh page, even when only the #fragment differs
        self.driver.get(url)
        self.console()  # what the previous test's pages logged is theirs

    def __call__(self, element_id: str) -> WebElement:
        return self.driver.find_element(By.ID, element_id)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, element_id: str) -> str:
        return self(element_id).text

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, predicate: Callable[[], object], timeout: float, what: str) -> Any:
        """Poll `predicate` until it is truthy; fail naming `what` and the page's status lines."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                statuses = self.js(
                    "return [...document.querySelectorAll('[role=status], [role=alert], .note')]"
                    ".map(e => e.id + ': ' + e.textContent).join(' | ')"
                )
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; page says: {statuses}")
            time.sleep(0.05)

    def tab(self, name: str) -> None:
        self(f"tab-{name}").click()
        self.wait(lambda: self(f"view-{name}").is_displayed(), 5, f"the {name} view")

    def console(self) -> list[dict[str, Any]]:
        """Warnings and errors the page logged since the last call."""
        entries: list[dict[str, Any]] = self.driver.get_log("browser")
        return [e for e in entries if e["level"] in ("WARNING", "SEVERE")]

    def assert_clean_console(self, allowed: Iterable[str] = ()) -> None:
        """No console warning or error, but those matching an `allowed` pattern (one the test provoked)."""
        patterns = [re.compile(p) for p in allowed]
        unexpected = [e["message"] for e in self.console() if not any(p.search(e["message"]) for p in patterns)]
        assert not unexpected, f"the browser console has errors: {unexpected}"

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))

    def downloaded(self, name: str, timeout: float = 15) -> str:
        """The text of a file the page saved, once the browser has finished writing it."""
        path = self.downloads / name
        self.wait(
            lambda: path.is_file() and not (self.downloads / f"{name}.crdownload").exists(),
            timeout,
            f"the download {name}",
        )
        return path.read_text()
