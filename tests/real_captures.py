"""Where the real captures are (``../shared/captures`` beside the repository; see its README).

Tests and benches find them relative to the repository root, as CI lays them out. Missing
captures fail the test under CI=1 (CI must have them) and skip it elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / ".." / "shared" / "captures"


def capture(*parts: str) -> Path:
    """The path of a capture (folder or file) under ``../shared/captures``; fail/skip when absent."""
    path = CAPTURES.joinpath(*parts)
    if not path.exists():
        message = f"the real capture {path} is missing (see ../shared/captures/README.md)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path.resolve()
