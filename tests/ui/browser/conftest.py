"""Real-browser fixtures: Debian's Chromium driven by Playwright against the live server.

Playwright cannot download its own browser on these machines, so it drives
/usr/bin/chromium (`apt-get install chromium`). Without it the tests skip with that hint, unless
REQUIRE_BROWSER_TESTS=1 (CI sets it), where a missing browser is a failure.
"""

from __future__ import annotations

import base64
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make around
# it are ordinary synchronous code, so Django's async-safety check does not apply to them.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = (
            f"Chromium not found at {CHROMIUM}: install it with `sudo apt-get install chromium` "
            f"(or set CHROMIUM_PATH) to run the real-browser tests"
        )
        if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@dataclass
class Recorder:
    """Everything the server sent to the page, and every DOM the page showed."""

    bodies: list[tuple[str, bytes]] = field(default_factory=list)
    doms: list[tuple[str, str]] = field(default_factory=list)

    def text(self) -> str:
        parts = [body.decode("utf-8", "replace") for _, body in self.bodies]
        parts += [dom for _, dom in self.doms]
        return "\n".join(parts)

    def assert_never_contains(self, secret: str) -> None:
        raw = secret.encode()
        forms = {
            secret,
            urllib.parse.quote(secret, safe=""),
            urllib.parse.quote_plus(secret),
            base64.b64encode(raw).decode(),
            base64.b64encode(raw).decode().rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
        }
        assert self.bodies, "no response was recorded"
        for url, body in self.bodies:
            text = body.decode("utf-8", "replace")
            for form in forms:
                assert form not in text, f"the secret ({form!r}) came back in {url}"
        for url, dom in self.doms:
            for form in forms:
                assert form not in dom, f"the secret ({form!r}) is in the DOM of {url}"


@dataclass
class BrowserPage:
    page: Any
    base_url: str
    recorder: Recorder

    def goto(self, path: str) -> Any:
        response = self.page.goto(self.base_url + path)
        self.snapshot()
        return response

    def snapshot(self) -> None:
        self.page.wait_for_load_state()
        self.recorder.doms.append((self.page.url, self.page.content()))

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def sign_in(self, username: str, password: str) -> None:
        self.goto("/accounts/login/")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", password)
        self.page.click("button[type=submit]")
        self.snapshot()


@pytest.fixture
def browser_page(chromium: Any, live_server: Any) -> Iterator[BrowserPage]:
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    recorder = Recorder()
    errors: list[str] = []

    from playwright.sync_api import Error as PlaywrightError

    def record(response: Any) -> None:
        try:
            body = response.body()
        except PlaywrightError:
            return  # a redirect or an aborted load: no body to scan
        recorder.bodies.append((response.url, body))

    page.on("response", record)
    # A Content-Security-Policy violation or a script error is a bug: collect them.
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield BrowserPage(page=page, base_url=live_server.url, recorder=recorder)
    context.close()
    assert not [e for e in errors if "404" not in e and "403" not in e], errors
