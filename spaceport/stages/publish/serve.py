"""A local static server for the report and viewer, bound to 127.0.0.1 only."""

from __future__ import annotations

import functools
import http.server
import threading
import webbrowser
from pathlib import Path
from typing import ClassVar

import click

from spaceport.core.errors import InputInvalid


class _Handler(http.server.SimpleHTTPRequestHandler):
    # Module scripts must be served as JavaScript; older mimetypes tables lack .mjs.
    extensions_map: ClassVar[dict[str, str]] = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript", ".sog": "application/octet-stream",
                      ".webp": "image/webp", ".json": "application/json"}

    def log_message(self, format: str, *args: object) -> None:  # quiet: one line per error only
        if args and str(args[1] if len(args) > 1 else "").startswith(("4", "5")):
            super().log_message(format, *args)


def report_dir(directory: Path) -> Path:
    """The folder holding viewer.html: DIRECTORY itself or its report/ subfolder."""
    directory = Path(directory)
    for cand in (directory, directory / "report"):
        if (cand / "viewer.html").is_file() or (cand / "index.html").is_file():
            return cand
    raise InputInvalid(f"{directory} holds no report (index.html or viewer.html)",
                       "Pass the --out folder of `spaceport run`, or run `spaceport publish` first")


def make_server(directory: Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """A server for the report folder on 127.0.0.1 (port 0 picks a free port)."""
    handler = functools.partial(_Handler, directory=str(report_dir(directory)))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def serve(directory: Path, port: int = 8000, open_browser: bool = True) -> None:
    """Serve until Ctrl-C."""
    server = make_server(directory, port)
    host, real_port = server.server_address[:2]
    page = "viewer.html" if (report_dir(directory) / "viewer.html").is_file() else "index.html"
    url = f"http://{host}:{real_port}/{page}"
    click.echo(f"serving {report_dir(directory)} at {url}  (report: http://{host}:{real_port}/index.html; Ctrl-C stops)")
    if open_browser:
        threading.Timer(0.5, lambda: webbrowser.open(url)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
