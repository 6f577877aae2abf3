"""What the bench tables say about the machine they ran on (shared by every bench script)."""

from __future__ import annotations

import platform
import re
import sys
from pathlib import Path

#: The repository root, put first on ``sys.path`` so that a bench run as ``python bench/X.py``
#: imports this tree's ``spaceport`` and the test helpers it shares (``tests.support``).
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.real_captures import CAPTURES  # noqa: E402  (the repository's captures/, one definition)

__all__ = ["CAPTURES", "ROOT", "cpu_model", "mem_gib", "write_table"]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what platform knows elsewhere."""
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        match = None
    return match.group(1).strip() if match else (platform.processor() or platform.machine() or "unknown CPU")


def mem_gib() -> float:
    """Total memory in GiB from /proc/meminfo (NaN where it cannot be read)."""
    try:
        match = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    except OSError:
        match = None
    return int(match.group(1)) / 2**20 if match else float("nan")


def write_table(lines: list[str], out: str | Path) -> None:
    """Write a bench's markdown table to ``out`` (creating its folder) and print it."""
    text = "\n".join(lines)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    print(text)
