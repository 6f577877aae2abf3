"""Where the real captures are: ``captures/`` in this repository (see its README for sources and terms).

Tests and benches find them through :data:`CAPTURES`. A missing capture means a checkout without
them: :func:`capture` skips the test, which fails it on CI (``tests/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"


def capture(*parts: str) -> Path:
    """The path of a capture (folder or file) under ``captures/``; skips the test when it is absent."""
    path = CAPTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"the real capture {path} is missing (captures/README.md; a full checkout carries it)")
    return path
