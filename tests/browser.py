"""Headless Chromium driven over the DevTools protocol (CDP), for page tests.

A small synchronous CDP client over ``websocket-client``: start Chromium with
``--remote-debugging-port=0``, read the port it picked from ``DevToolsActivePort`` in its
profile folder, attach to the first tab, then navigate, run JavaScript, wait for loads
and take screenshots. ``find_chromium()`` returns ``None`` when no binary is installed, so
tests can skip with a clear reason.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.waiting import wait_until

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    """The Chromium binary: ``DESKWIRE_TEST_CHROMIUM``, else chromium on PATH."""
    explicit = os.environ.get("DESKWIRE_TEST_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(Exception):
    """Chromium did not start, answer or load in time."""


class Browser:
    """One headless Chromium with one tab, driven over CDP."""

    def __init__(self, binary: str, profile: Path, *, width: int = 1200, height: int = 800) -> None:
        import websocket  # websocket-client; imported here so the module imports without it

        profile.mkdir(parents=True, exist_ok=True)
        self._log = (profile.parent / "chromium.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        try:
            port = self._devtools_port(profile)
            tab = self._first_tab(port)
            self._ws = websocket.create_connection(
                tab["webSocketDebuggerUrl"], timeout=30, suppress_origin=True
            )
            self.send("Page.enable")
            self.send(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, profile: Path, timeout: float = 30) -> int:
        marker = profile / "DevToolsActivePort"

        def port() -> int | None:
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with {self.process.returncode}")
            if marker.exists():
                first = marker.read_text().splitlines()[:1]
                if first and first[0].isdigit():
                    return int(first[0])
            return None

        return wait_until(port, timeout, "chromium opening its DevTools port")

    @staticmethod
    def _first_tab(port: int, timeout: float = 15) -> dict[str, Any]:

        def first_page() -> dict[str, Any] | None:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
            except httpx.HTTPError:
                targets = []
            pages = [t for t in targets if t.get("type") == "page"]
            return dict(pages[0]) if pages else None

        return wait_until(first_page, timeout, "a chromium tab to attach to", interval=0.1)

    # ---- protocol ------------------------------------------------------------------------

    def _receive(self, timeout: float) -> dict[str, Any]:
        self._ws.settimeout(max(0.05, timeout))
        message: dict[str, Any] = json.loads(self._ws.recv())
        return message

    def send(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        """Call a CDP method and return its result; events met meanwhile are kept."""
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"no answer to {method} in {timeout}s")
            message = self._receive(remaining)
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30) -> dict[str, Any]:
        """Wait for a CDP event (kept ones first)."""
        deadline = time.monotonic() + timeout
        while True:
            for index, seen in enumerate(self.events):
                if seen.get("method") == event:
                    return self.events.pop(index)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"no {event} in {timeout}s (at {self.url()})")
            try:
                message = self._receive(remaining)
            except Exception as exc:  # websocket timeout: report as ours
                if "timed out" in str(exc).lower():
                    continue
                raise
            if "method" in message:
                self.events.append(message)

    # ---- pages ---------------------------------------------------------------------------

    def goto(self, url: str) -> None:
        """Open ``url`` and wait until the page (after redirects) has loaded."""
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """Run JavaScript in the page and return its (JSON) value."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def navigate_by(self, expression: str) -> None:
        """Run JavaScript that navigates (a click, a submit) and wait for the next load."""
        self.events.clear()
        self.evaluate(expression)
        self.wait_for("Page.loadEventFired")

    def click(self, selector: str) -> None:
        """Click the element matching ``selector`` and wait for the page it leads to."""
        self.navigate_by(f"document.querySelector({json.dumps(selector)}).click()")

    def fill(self, selector: str, value: str) -> None:
        """Set an input's value."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")

    def url(self) -> str:
        """The address of the page shown."""
        return str(self.evaluate("location.href"))

    def html(self) -> str:
        """The page's DOM as HTML."""
        return str(self.evaluate("document.documentElement.outerHTML"))

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Close the tab's socket and end Chromium (this process only)."""
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
