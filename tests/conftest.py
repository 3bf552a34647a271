"""Shared test plumbing.

In CI (``CI=true``) a skipped interop test is turned into a failure: the
real peers must be installed there, and a silent skip would hide that.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
from pluggy import Result

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("interop") is not None:
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"interop test skipped in CI (a skip is a failure here): {reason}"
