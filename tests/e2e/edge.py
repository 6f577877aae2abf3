"""Run the results distribution's edge function locally: ``edge_server.mjs`` in node, over a folder
laid out like the data bucket. Every request goes through ``cloud/stacks/edge/link_check.js`` itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = ROOT / "cloud" / "stacks" / "edge" / "link_check.js"
SERVER = Path(__file__).with_name("edge_server.mjs")


class EdgeServer:
    """``node edge_server.mjs`` on 127.0.0.1; ``requests`` holds one dict per request it answered."""

    def __init__(self, root: Path, secret_file: Path) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed (the CDK app needs it too)")
        self.proc = subprocess.Popen([node, str(SERVER), str(FUNCTION), str(root), str(secret_file)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        if not first:
            raise RuntimeError(f"edge server did not start: {self.proc.stderr.read()[-2000:]}")
        self.port = json.loads(first)["port"]
        self.requests: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.requests.append(json.loads(line))

    def local(self, url: str) -> str:
        """A link to the distribution (https://<domain>/...) pointed at this server instead."""
        path = url.split("/", 3)[3]
        return f"http://127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)

    def __enter__(self) -> EdgeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
