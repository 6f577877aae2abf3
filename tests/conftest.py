"""The one skip rule for the whole suite: on CI only GPU-marked tests may skip.

A test skips where something it needs is missing: a tool (ffmpeg, chromium, node and the npm
tools, hadolint), a Python package, or a file the checkout should carry (``captures/``). On a
developer's machine that is a skip with the reason and the fix. On CI (``CI`` set, as ``.ci/run``
and most CI services do) it is a failure, because a clean CI machine must have everything but a
GPU: a skip there would let a test that never ran pass silently. Tests marked ``gpu`` still skip.
"""

from __future__ import annotations

import os

import pytest


def on_ci() -> bool:
    """``CI`` is set to anything but an empty string, ``0``, ``false`` or ``no``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _fail_skip_on_ci(report, gpu_marked: bool) -> None:
    if report.skipped and on_ci() and not gpu_marked and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped on CI, where only gpu-marked tests may skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip_on_ci(outcome.get_result(), item.get_closest_marker("gpu") is not None)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module that skips as a whole (``pytest.importorskip`` at import) fails on CI too."""
    outcome = yield
    _fail_skip_on_ci(outcome.get_result(), collector.get_closest_marker("gpu") is not None)
