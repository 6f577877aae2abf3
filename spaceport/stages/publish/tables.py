"""HTML pieces of the report: number formatting, tables, folded details, and the privacy filter.

The report is shared by link, so any value that could identify the account, the bucket, a local
path or a person is left out (:func:`safe`).
"""

from __future__ import annotations

import base64
import html
import math
import re
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2em}
section{margin:2em 0;border-top:1px solid #ddd;padding-top:.5em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:14px}
td:nth-child(n+2){font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px}
.card b{display:block;font-size:22px}.note{color:#a60}
figure{display:inline-block;margin:6px}figcaption{font-size:13px;color:#555}
img{max-width:100%}details summary{cursor:pointer;color:#036}
.pass{color:#080}.fail{color:#b00}.below{border:3px solid #b00;background:#fff0f0;padding:4px 16px;margin:12px 0}.below h2{color:#b00}
"""

_SENSITIVE = re.compile(r"arn:aws|s3://|file://|[^\s@]+@[^\s@]+\.[a-z]{2,}|(?<!\d)\d{12}(?!\d)|^/", re.IGNORECASE)


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def human_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000.0
    return f"{n:.2f} GB"


def flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Scalar leaves of a summary as (dotted key, value); long lists are summarised."""
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += flatten(v, key + ".")
        elif isinstance(v, list):
            if v and all(not isinstance(x, (dict, list)) for x in v) and len(v) <= 8:
                rows.append((key, ", ".join(fmt(x) for x in v)))
            else:
                rows.append((key, f"[{len(v)} entries]"))
        else:
            rows.append((key, v))
    return rows


def table(rows: list[tuple[str, Any]], head: tuple[str, str] | None = None) -> str:
    out = ["<table>"]
    if head:
        out.append(f"<tr><th>{html.escape(head[0])}</th><th>{html.escape(head[1])}</th></tr>")
    for k, v in rows:
        out.append(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(fmt(v))}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def details(summary: str, rows: list[tuple[str, Any]]) -> str:
    return f"<details><summary>{html.escape(summary)}</summary>{table(rows)}</details>"


def is_sensitive(value: Any) -> bool:
    """A string that could identify the account, the bucket, a local path or a person."""
    return isinstance(value, str) and bool(_SENSITIVE.search(value))


def safe(rows: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``rows`` without the sensitive values (and without keys that name an e-mail)."""
    return [(k, v) for k, v in rows if not is_sensitive(v) and "email" not in str(k).lower()]


def source_name(uri: str | None) -> str | None:
    """The upload's file name only (its bucket, prefix or local folder stay out of the report)."""
    if not uri:
        return None
    from urllib.parse import unquote

    name = unquote(uri.rstrip("/").rsplit("/", 1)[-1])
    return None if is_sensitive(name) else name
