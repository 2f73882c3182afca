"""What the Chromium tests of the review page share: the server under uvicorn, the browser, logging in,
waiting on the page and the two screen sizes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SIZES = {"1440x900": {"width": 1440, "height": 900}, "390x844": {"width": 390, "height": 844}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port, until the block ends; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the review page did not start under uvicorn within 20 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def chromium() -> Iterator[Any]:
    """A headless Chromium (the Debian one), for a fixture to yield from; skips where it is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (scripts/install_system_deps.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def log_in(page: Any, base: str, user: str, password: str, then: str, *, lang: str | None = None) -> None:
    """Log in through the form, asking for ``then``; returns on the page it lands on."""
    page.goto(f"{base}/login?{f'lang={lang}&' if lang else ''}next={then}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("form.login button[type=submit]")
    page.wait_for_load_state()


def wait_js(page: Any, expression: str, timeout_s: float) -> None:
    """Poll a JS expression (page.wait_for_function compiles its predicate with eval, which the
    page's Content-Security-Policy rightly forbids; evaluate runs outside the page's CSP)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {expression}"
        time.sleep(0.1)


def screens(page: Any, name: str, out: Path) -> None:
    """The page at 1440x900 and 390x844 (saved as ``{name}-zh-CN-{size}.png`` under ``out``, printed);
    at 390 px nothing is wider than the screen."""
    out.mkdir(parents=True, exist_ok=True)
    for size, viewport in SIZES.items():
        page.set_viewport_size(viewport)
        time.sleep(0.3)
        path = out / f"{name}-zh-CN-{size}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        if viewport["width"] == 390:
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{name} is {width} px wide at 390 px"
    page.set_viewport_size(SIZES["1440x900"])
