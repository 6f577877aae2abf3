"""Drive headless Chromium over the DevTools protocol on a pipe (stdlib only; no websocket client).

``--remote-debugging-pipe`` makes Chromium read NUL-terminated JSON commands on fd 3 and write
replies on fd 4. The test uses this rather than ``--screenshot --virtual-time-budget`` because the
PlayCanvas splat sorter runs in a Web Worker, which virtual time does not advance: the page drew one
frame and then stalled. Real time plus a ready flag set by the page is deterministic enough.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
#: A small SOG (a unit sphere) the viewer tests open.
SPHERE_SOG = Path(__file__).resolve().parents[1] / "unit" / "run" / "data" / "sphere.sog"
#: The viewer's clear colour, 0-255.
BACKGROUND = (0.1 * 255, 0.1 * 255, 0.12 * 255)


def lit_fraction(png: Path) -> float:
    """Share of canvas pixels that differ clearly from the clear colour (the bottom text rows excluded)."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32)
    canvas = img[: img.shape[0] - 40]
    return float((np.abs(canvas - np.array(BACKGROUND)).max(axis=2) > 40).mean())


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """A headless Chromium with one page, driven over the DevTools pipe."""

    def __init__(self, binary: str, size: tuple[int, int] = (800, 600)):
        self.profile = tempfile.mkdtemp(prefix="spaceport-chromium-")
        to_chrome_r, self._w = (self._high(fd) for fd in os.pipe())
        self._r, from_chrome_w = (self._high(fd) for fd in os.pipe())
        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--no-default-browser-check", f"--user-data-dir={self.profile}",
            f"--window-size={size[0]},{size[1]}", "--remote-debugging-pipe", "about:blank",
        ]
        # fd 3 = commands to Chromium, fd 4 = replies from it: bash moves the pipe ends there (dash cannot name fds above 9).
        shell = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-'
        self.proc = subprocess.Popen(["bash", "-c", shell, *args], pass_fds=(to_chrome_r, from_chrome_w),
                                     stdout=subprocess.DEVNULL, stderr=None)
        # Popen's pass_fds keeps the originals open too; the child uses its dup'ed 3 and 4.
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.console: list[str] = []
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.call("Runtime.enable", session=True)
        self.call("Page.enable", session=True)

    @staticmethod
    def _high(fd: int) -> int:
        """Move a descriptor above 9 so the shell's 3/4 redirections cannot clobber it."""
        import fcntl

        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return new

    def _read_message(self) -> dict:
        while b"\0" not in self._buf:
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, session: bool = False, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("method") == "Runtime.consoleAPICalled":
                args = reply["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        res = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return res.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)

    def wait_for(self, expression: str, timeout_s: float = 60.0, accept=lambda v: bool(v)):
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if accept(value):
                return value
            time.sleep(0.25)
        return value

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
