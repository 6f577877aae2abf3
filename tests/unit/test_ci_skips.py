"""The suite's skip rule (tests/conftest.py): a skip is a skip on a developer's machine and a failure
on CI, except for gpu-marked tests."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

RULE = (Path(__file__).resolve().parents[1] / "conftest.py").read_text()
PROBES = '''
import pytest

def test_tool_missing():
    pytest.skip("ffmpeg is not installed")

@pytest.mark.skipif(True, reason="chromium is not installed")
def test_marker_skip():
    pass

@pytest.mark.gpu
def test_needs_a_gpu():
    pytest.skip("no CUDA GPU")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False

def test_runs():
    pass
'''


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(RULE)
    pytester.makeini("[pytest]\nmarkers =\n    gpu: needs a CUDA GPU\n")
    pytester.makepyfile(test_probes=PROBES)
    return pytester


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_off_ci_missing_tools_skip(suite, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_on_ci_only_gpu_tests_skip(suite, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    result = suite.runpytest("-p", "no:cacheprovider", "-rA")
    # The skip inside the test fails it; a skipif marker skips in setup, which fails as an error.
    result.assert_outcomes(passed=1, skipped=1, xfailed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(["FAILED*test_tool_missing*only gpu-marked tests may skip*ffmpeg is not installed*"])
    result.stdout.fnmatch_lines(["ERROR*test_marker_skip*only gpu-marked tests may skip*chromium is not installed*"])


def test_on_ci_a_module_that_skips_whole_fails(pytester, monkeypatch):
    pytester.makeconftest(RULE)
    pytester.makepyfile(test_mod='import pytest\npytest.importorskip("no_such_module_here")\n\ndef test_a():\n    pass\n')
    monkeypatch.setenv("CI", "true")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(errors=1)
    monkeypatch.delenv("CI")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(skipped=1)
