"""pytest configuration: a live comparison skipped in CI is a failure.

Helpers for the tests live in :mod:`tests.helpers`.
"""

from __future__ import annotations

import pytest

from tests.helpers import REQUIRE_LIVE


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    is_live = item.get_closest_marker("live") is not None or "tf" in getattr(item, "fixturenames", ())
    if REQUIRE_LIVE and report.skipped and is_live:
        report.outcome = "failed"
        report.longrepr = f"live comparison skipped in CI: {report.longrepr}"
