"""Start (or rule out) Julia before any test imports torch: juliacall must come first in a process.

Julia skips: a test marked ``julia`` skips where Julia (or one of its AD backends) is unavailable,
with the reason. With ``PYFA_REQUIRE_JULIA=1`` (CI with Julia) every such skip is reported as a
failure instead, so that a broken bridge cannot pass as a row of skips.
"""

import os

import pytest

import pyfa.julia


def pytest_configure(config):
    # Where there is no Julia this fails fast (and is cached); where there is, Julia starts now.
    pyfa.julia.available()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and not hasattr(report, "wasxfail")
            and os.environ.get("PYFA_REQUIRE_JULIA", "") == "1"
            and item.get_closest_marker("julia") is not None):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"PYFA_REQUIRE_JULIA=1, but this julia test skipped: {reason}"
