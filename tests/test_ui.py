"""The web page at `/`, in a real browser (headless chromium) against real servers.

Chromium's fake microphone plays a committed clip; everything else is what a person does:
click, type, drop a file, read the page. Each view's screenshot in docs/screenshots/ is
taken here, by the run that checks what it shows.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import ASSETS, Server, key_words_found, server_fixture, wait_for, worker_pids
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from ui_browser import CHROMEDRIVER, CHROMIUM, LAN_NAME, Page, speech_clip, start_browser

HAVE_BROWSER = CHROMIUM.exists() and CHROMEDRIVER.exists()
NO_BROWSER = "needs Debian's chromium and chromium-driver (.ci/run installs them)"

WEATHER_WORDS = ["morning", "weather", "sunny", "warm", "breeze", "west", "garden", "dinner"]
FOX_WORDS = ["quick", "brown", "fox", "lazy", "dog"]

#: tiny.en for dictation and files; "brief", another copy, to watch count down and unload.
server = server_fixture(
    """
[server]
default_model = "tiny.en"
max_loaded_models = 4
memory_budget_mb = 4000
[defaults]
ttl = -1
preload = true
[models."tiny.en"]
source = "bundled"
description = "Whisper tiny.en, bundled"
[models."brief"]
source = "bundled"
ttl = 300
description = "a second copy, unloaded after 5 idle minutes"
""",
    warm_spare=True,
)

keyed_server = server_fixture("""
[server]
default_model = "tiny.en"
api_keys = ["page-key"]
admin_keys = ["admin-key"]
[defaults]
ttl = -1
[models."tiny.en"]
source = "bundled"
""")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    if not HAVE_BROWSER:
        pytest.skip(NO_BROWSER)
    root = tmp_path_factory.mktemp("browser")
    downloads = root / "downloads"
    downloads.mkdir()
    driver = start_browser(speech_clip(root), downloads)
    try:
        yield Page(driver, downloads)
    finally:
        driver.quit()


def test_live_dictation_shows_partials_then_finals(browser: Page, server: Server) -> None:
    page = browser
    page.open(server.url)
    page.wait(lambda: page("view-live").is_displayed(), 10, "the live view")
    assert page("model").get_attribute("value") == "tiny.en"
    assert "tiny.en (default)" in page("model").text and "brief" in page("model").text
    assert page("language").get_attribute("value") == "en"  # an English-only model offers just English
    # Everything the transcript box shows, recorded as it changes (a person watching it).
    page.js("""
        window.seen = [];
        const box = document.getElementById('live-text');
        new MutationObserver(() => {
            const current = document.getElementById('current');
            window.seen.push({
                committed: current.querySelector('.committed').textContent,
                tentative: current.querySelector('.tentative').textContent,
                finals: box.querySelectorAll('p.final').length,
            });
        }).observe(box, {subtree: true, childList: true, characterData: true});
    """)

    page("mic").click()
    page.wait(lambda: "Listening" in page.text("live-status"), 15, "the session to be ready")
    assert page("mic").get_attribute("aria-pressed") == "true"

    # The clip's pause between its sentences may end an utterance there, or not: its words
    # are looked for in every final so far.
    def finals() -> str:
        return " ".join(paragraph.text for paragraph in page.all("#live-text p.final"))

    page.wait(lambda: len(key_words_found(finals(), WEATHER_WORDS)) >= 5, 30, "finals with the clip's words")
    seen = page.js("return window.seen")
    assert any(s["committed"] + s["tentative"] for s in seen if s["finals"] == 0), "no partial before the first final"

    # A slow decoder sends fewer, longer partials (a busy machine may show one for the clip's
    # first utterance): the fake microphone loops the clip, so the next words are waited for.
    def partials() -> set[str]:
        return {s["committed"] + s["tentative"] for s in page.js("return window.seen")} - {""}

    page.wait(lambda: len(partials()) >= 2, 30, "the words shown to grow while spoken")
    seen = page.js("return window.seen")
    assert any(s["tentative"] for s in seen), "no word was shown as tentative"
    # Tentative words look different from settled ones.
    styles = page.js("""
        const style = (c) => { const s = getComputedStyle(document.querySelector('#current .' + c));
                               return [s.fontStyle, s.color]; };
        return [style('committed'), style('tentative')];""")
    assert styles[0] != styles[1], styles
    latency = page.all("#live-text p.final .latency")[0].text
    assert re.fullmatch(r"\d+\.\d\d s", latency) and 0 < float(latency.split()[0]) < 10, latency

    # The clip plays again: the same session goes on with new partials under the first final.
    page.wait(
        lambda: page.js("return document.querySelector('#current .tentative').textContent"), 15, "the next partial"
    )
    page.screenshot("live")
    page("mic").click()
    page.wait(lambda: "Stopped" in page.text("live-status"), 20, "the session to end")
    assert page.text("mic-label") == "Start dictation"
    assert page("live-copy").is_enabled()
    page.assert_clean_console()


def test_file_transcript_and_its_downloads(browser: Page, server: Server) -> None:
    page = browser
    page.open(f"{server.url}/#file")
    page.wait(lambda: page("view-file").is_displayed(), 10, "the file view")
    served = server.model()["requests"]
    page("file-input").send_keys(str(ASSETS / "weather.wav"))
    page.wait(lambda: "Done" in page.text("file-status"), 30, "the transcript")
    text = page.text("file-text")
    assert len(key_words_found(text, WEATHER_WORDS)) >= 6, text
    assert len(page.all("#file-text span.segment")) >= 2  # one per streamed delta, as they came

    page.driver.find_element(By.CSS_SELECTOR, "button.download[data-format=txt]").click()
    assert page.downloaded("weather.txt").strip() == text.strip()
    page.driver.find_element(By.CSS_SELECTOR, "button.download[data-format=srt]").click()
    cues = parse_srt(page.downloaded("weather.srt"))
    assert cues, "an empty srt"
    assert len(key_words_found(" ".join(c[2] for c in cues), WEATHER_WORDS)) >= 6
    page.driver.find_element(By.CSS_SELECTOR, "button.download[data-format=vtt]").click()
    vtt = page.downloaded("weather.vtt")
    assert vtt.startswith("WEBVTT\n\n") and "-->" in vtt
    page.wait(lambda: "Saved weather.vtt" in page.text("file-status"), 5, "the vtt to be saved")
    # The subtitles' times came with the stream (transcript.text.segment): one transcription in all.
    assert server.model()["requests"] == served + 1
    page("file-copy").click()
    page.wait(lambda: page.text("file-status") == "Copied.", 5, "the copy")
    page.screenshot("file")
    page.assert_clean_console()


def parse_srt(srt: str) -> list[tuple[float, float, str]]:
    """SubRip's cues, checked on the way: numbered from 1, well-formed times, in order."""
    cues = []
    stamp = r"(\d\d):(\d\d):(\d\d),(\d\d\d)"
    for number, block in enumerate(srt.strip().split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(number), block
        times = re.fullmatch(f"{stamp} --> {stamp}", lines[1])
        assert times, block
        h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(g) for g in times.groups())
        start, end = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        assert 0 <= start < end and (not cues or start >= cues[-1][0]), block
        assert lines[2:] and all(lines[2:]), block
        cues.append((start, end, " ".join(lines[2:])))
    return cues


def test_models_count_down_and_unload_ends_the_worker(browser: Page, server: Server) -> None:
    page = browser
    page.open(f"{server.url}/#models")
    card = '#model-list [data-model="brief"]'
    ttl_field = f'{card} [data-field="ttl"]'
    page.wait(lambda: re.fullmatch(r"in \d+:\d\d", field(page, ttl_field)), 15, "brief's TTL")
    first = seconds(field(page, ttl_field))
    assert abs(first - server.model("brief")["ttl_remaining"]) < 4, first  # what /health says, give or take a refresh
    page.wait(lambda: seconds(field(page, ttl_field)) <= first - 2, 6, "the TTL to count down")

    health = server.health()
    pid = health["models"]["brief"]["pid"]
    assert field(page, f'{card} [data-field="pid"]') == str(pid)
    assert re.fullmatch(r"\d+ MB RAM", field(page, f'{card} [data-field="memory"]'))
    assert field(page, f"{card} .badge") == "ready"
    overview = page.text("overview")
    assert f"PID {health['spare_pid']}" in overview, overview
    assert "of 3.9 GB budget" in overview and "(at most 4)" in overview, overview
    page.screenshot("models")

    assert pid in worker_pids(server.pid)
    page.driver.find_element(By.CSS_SELECTOR, f'{card} button[data-action="unload"]').click()
    wait_for(lambda: not running(pid), 20, what=f"brief's worker {pid} to end")
    page.wait(lambda: field(page, f"{card} .badge") == "unloaded", 10, "brief shown unloaded")
    assert f"worker PID {pid} ended" in page.text("models-status")
    assert field(page, f'{card} [data-field="pid"]') == "—"
    assert page.driver.find_element(By.CSS_SELECTOR, f'{card} button[data-action="load"]').is_enabled()
    page.assert_clean_console()


def field(page: Page, css: str) -> str:
    found = page.all(css)
    return found[0].text if found else ""


def seconds(clock: str) -> int:
    minutes, secs = re.fullmatch(r"in (\d+):(\d\d)", clock).groups()  # type: ignore[union-attr]
    return int(minutes) * 60 + int(secs)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_with_keys_the_page_asks_and_then_works(browser: Page, keyed_server: Server) -> None:
    page = browser
    page.open(keyed_server.url)
    page.wait(lambda: page("view-key").is_displayed(), 10, "the key prompt")
    page.screenshot("key")
    asked = page.js("return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)")
    assert not [path for path in asked if path.startswith(("/v1/", "/health"))], asked
    assert "tiny.en" not in page.driver.page_source

    page("key-input").send_keys("not-the-key", Keys.ENTER)
    page.wait(lambda: "not accepted" in page.text("key-message"), 10, "the wrong key refused")
    assert "tiny.en" not in page.driver.page_source and not page("tabs").is_displayed()
    wrong_key_logged = [r"/v1/models - Failed to load resource: .* 401"]
    page.assert_clean_console(allowed=wrong_key_logged)

    page("key-input").clear()
    page("key-input").send_keys("page-key", Keys.ENTER)
    page.wait(lambda: page("view-live").is_displayed(), 10, "the page after the key")
    assert page("model").get_attribute("value") == "tiny.en"
    page.driver.refresh()  # kept for this tab's session: not asked again
    page.wait(lambda: page("view-live").is_displayed(), 10, "the page after a reload")
    assert not page("view-key").is_displayed()

    # Loading needs the admin key: asked for once, then the worker starts.
    page.tab("models")
    load = '#model-list [data-model="tiny.en"] button[data-action="load"]'
    page.wait(lambda: page.all(load) and page.all(load)[0].is_enabled(), 10, "the load button")
    page.all(load)[0].click()
    page.wait(lambda: page("admin-form").is_displayed(), 5, "the admin key prompt")
    page("admin-input").send_keys("admin-key", Keys.ENTER)
    page.wait(lambda: "is ready: worker PID" in page.text("models-status"), 30, "tiny.en to load")
    pid = keyed_server.model()["pid"]
    assert pid in worker_pids(keyed_server.pid)
    page.wait(lambda: field(page, '[data-model="tiny.en"] [data-field="pid"]') == str(pid), 5, "its PID shown")

    page.tab("file")
    page("file-input").send_keys(str(ASSETS / "fox.wav"))
    page.wait(lambda: "Done" in page.text("file-status"), 30, "the fox transcript")
    assert len(key_words_found(page.text("file-text"), FOX_WORDS)) >= 4

    page.tab("live")  # the WebSocket carries the key in its query string
    page("mic").click()
    page.wait(lambda: "Listening" in page.text("live-status"), 15, "the live session with the key")
    page("mic").click()
    page.wait(lambda: "Stopped" in page.text("live-status"), 20, "the session to end")
    page.assert_clean_console()


def test_phone_width_and_keyboard(browser: Page, server: Server) -> None:
    page = browser
    page.open(server.url, viewport=(390, 844), phone=True)
    page.wait(lambda: page("view-live").is_displayed(), 10, "the live view")
    body = page.driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)  # the first stop is the selected tab
    assert page.js("return document.activeElement.id") == "tab-live"
    for name in ("file", "models"):
        page.driver.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
        page.wait(lambda name=name: page(f"view-{name}").is_displayed(), 5, f"the {name} view by keyboard")
        assert page.js("return document.activeElement.id") == f"tab-{name}"
        assert page.js("return document.documentElement.scrollWidth <= window.innerWidth"), f"{name} scrolls sideways"
    page.wait(lambda: page.all("#model-list button"), 10, "the model cards")
    # Tab reaches the buttons of the cards; Home goes back to the first tab.
    for _ in range(10):
        page.driver.switch_to.active_element.send_keys(Keys.TAB)
        if page.js("return document.activeElement.closest('#model-list') !== null"):
            break
    else:
        raise AssertionError("Tab never reached a model's buttons")
    page.screenshot("phone")
    page("tab-models").send_keys(Keys.HOME)
    page.wait(lambda: page("view-live").is_displayed(), 5, "the live view by Home")
    assert page.js("return document.documentElement.scrollWidth <= window.innerWidth"), "live scrolls sideways"
    page.assert_clean_console()


def test_a_page_from_another_machine_says_why_there_is_no_microphone(browser: Page, server: Server) -> None:
    page = browser
    page.open(f"http://{LAN_NAME}:{server.port}/")  # 127.0.0.1 by another name: not a secure context
    page.wait(lambda: page("live-note").is_displayed(), 10, "the insecure-context note")
    note = page.text("live-note")
    assert "secure" in note and f"http://127.0.0.1:{server.port}/" in note and "HTTPS" in note, note
    assert not page("mic").is_enabled()
    page.tab("file")  # the rest of the page works
    page("file-input").send_keys(str(ASSETS / "fox.wav"))
    page.wait(lambda: "Done" in page.text("file-status"), 30, "the transcript")
    page.assert_clean_console()


@pytest.mark.skipif(not HAVE_BROWSER, reason=NO_BROWSER)
def test_a_refused_microphone_is_explained(tmp_path: Path, server: Server) -> None:
    driver = start_browser(speech_clip(tmp_path), tmp_path, allow_microphone=False)
    try:
        page = Page(driver, tmp_path)
        page.open(server.url)
        page.wait(lambda: page("mic").is_displayed(), 10, "the live view")
        page("mic").click()
        page.wait(lambda: "refused" in page.text("live-status"), 10, "the refusal explained")
        assert "Allow it for this site" in page.text("live-status")
        assert page.text("mic-label") == "Start dictation" and page("mic").is_enabled()
        page.assert_clean_console()
    finally:
        driver.quit()


def test_an_unreachable_server_is_said_plainly(browser: Page, make_server: Callable[..., Server]) -> None:
    page = browser
    lone = make_server('[models."tiny.en"]\nsource = "bundled"\n', "--no-wyoming")
    page.open(lone.url)
    page.wait(lambda: page("view-live").is_displayed(), 10, "the live view")
    lone.stop()
    page("mic").click()
    page.wait(lambda: "Cannot reach the server" in page.text("live-status"), 15, "the live error")
    page.tab("models")
    page.wait(lambda: page("banner").is_displayed(), 10, "the banner")
    assert f"Cannot reach the server at 127.0.0.1:{lone.port}" in page.text("banner")
    # What the browser itself logs for requests nobody answered: the page provoked them, and says why.
    page.assert_clean_console(
        allowed=[r"ERR_CONNECTION_REFUSED", r"Failed to load worklet module script: .*Network error"]
    )


def test_no_ui_leaves_the_page_out(make_server: Callable[..., Server]) -> None:
    quiet = make_server('[models."tiny.en"]\nsource = "bundled"\n', "--no-ui", "--no-wyoming")
    for path in ("/", "/ui/main.js", "/ui/auth.json"):
        response = quiet.client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert quiet.client.get("/health").status_code == 200


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={LAN_NAME}",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return cert, key


def test_https_gives_a_lan_page_the_microphone(
    browser: Page, make_server: Callable[..., Server], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    secure = make_server(
        # A short drain: at its stop, the server waits for the browser's idle TLS connections
        # to close ("Waiting for connections to close"), 4-9 s here, up to drain_timeout.
        f'[server]\nssl_certfile = "{cert}"\nssl_keyfile = "{key}"\ndrain_timeout = 1\n'
        '[models."tiny.en"]\nsource = "bundled"\n',
        "--no-wyoming",
        wait=False,
    )
    url = f"https://{LAN_NAME}:{secure.port}"
    wait_for(lambda: https_health(secure.port), 30, what="the server over HTTPS")
    page = browser
    page.open(url)
    page.wait(lambda: page("view-live").is_displayed(), 10, "the live view over HTTPS")
    assert not page("live-note").is_displayed() and page("mic").is_enabled()
    page("mic").click()  # wss://, and the model loads on the way
    page.wait(lambda: "Listening" in page.text("live-status"), 30, "the live session over wss")
    page("mic").click()
    page.wait(lambda: "Stopped" in page.text("live-status"), 20, "the session to end")
    page.assert_clean_console()


def https_health(port: int) -> bool:
    try:
        return httpx.get(f"https://127.0.0.1:{port}/health", verify=False, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize(
    ("server_table", "message"),
    [
        ('ssl_certfile = "{cert}"', "server.ssl_certfile is set but server.ssl_keyfile is not: HTTPS needs both"),
        ('ssl_certfile = "{cert}"\nssl_keyfile = "/nonexistent/key.pem"', "server.ssl_keyfile = '/nonexistent/key.pem': cannot read it: No such file or directory"),
        ('ssl_certfile = "{key}"\nssl_keyfile = "{key}"', "not a PEM certificate and its private key"),
    ],
)  # fmt: skip
def test_a_bad_certificate_stops_start_up_with_one_line(
    tmp_path: Path, certificate: tuple[Path, Path], server_table: str, message: str
) -> None:
    cert, key = certificate
    config = tmp_path / "asr.toml"
    config.write_text(f"[server]\n{server_table.format(cert=cert, key=key)}\n")
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "--config", str(config), "--no-wyoming"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
