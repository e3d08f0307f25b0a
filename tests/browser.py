"""Headless Chromium for the playground tests: Debian's /usr/bin/chromium driven by Playwright.

Playwright's own browser download needs the internet, so the tests launch the system Chromium
(``.ci/browser-setup`` installs it and the pinned Playwright). ``missing()`` says what is absent,
for a module-level skip; ``ConsoleLog`` collects what the page logs as errors; ``screenshot``
writes under ``artifacts/screenshots/`` for people to look at.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# Headless, no sandbox (CI runs as root), and none of Chromium's own traffic: this machine has no
# network, and without the background-networking flags Chromium keeps trying to reach Google.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
# Chromium logs every 4xx/5xx answer to fetch() as a console error with this text.
HTTP_STATUS_LOG = re.compile(r"^Failed to load resource: the server responded with a status of (\d{3})")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")):
        return f"Chromium is not installed at {CHROMIUM}; run .ci/browser-setup (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed; run .ci/browser-setup (pip install playwright)"
    return None


def chromium_path() -> str:
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else str(shutil.which("chromium"))


class ConsoleLog:
    """Console errors and uncaught exceptions of one page."""

    def __init__(self, page: Any):
        self.messages: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.messages.append(f"pageerror: {error}"))

    def _on_console(self, message: Any) -> None:
        if message.type == "error":
            self.messages.append(message.text)

    def clear(self) -> None:
        self.messages.clear()

    def errors(self, allow_statuses: tuple[int, ...] = ()) -> list[str]:
        """Every error, less Chromium's logs of HTTP answers whose status is in ``allow_statuses``
        (a test that sends a bad recipe on purpose expects its 422)."""
        kept = []
        for text in self.messages:
            status = HTTP_STATUS_LOG.match(text)
            if status and int(status.group(1)) in allow_statuses:
                continue
            kept.append(text)
        return kept


def wait_for_state(page: Any, view: str, states: tuple[str, ...], timeout_ms: float = 20_000) -> str:
    """Wait until ``body[data-<view>-state]`` is one of ``states`` (the page sets "pending" on
    every input, then "loading", then "ready" or "error"); returns the state reached."""
    attribute = f"{view}State"
    page.wait_for_function(
        "([attribute, states]) => states.includes(document.body.dataset[attribute])",
        arg=[attribute, list(states)],
        timeout=timeout_ms,
    )
    return page.evaluate("(attribute) => document.body.dataset[attribute]", attribute)


def screenshot(target: Any, name: str, full_page: bool = False) -> Path:
    """Save a PNG of a page (or of one element) as ``artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if full_page:  # from the top, so the sticky header sits where it belongs
        target.evaluate("window.scrollTo(0, 0)")
        target.screenshot(path=str(path), full_page=True)
    else:
        target.screenshot(path=str(path))
    return path
