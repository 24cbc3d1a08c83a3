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


@pytest.fixture(params=["compiled", "numpy"])
def kernels(request, monkeypatch):
    """Run a test with ckconv's compiled kernels and again with numpy's: both must give the
    same bytes. CI builds the kernels (.ci/run), so there their absence is a failure."""
    from ckconv.converters import native

    if request.param == "numpy":
        monkeypatch.setattr(native, "NATIVE", None)
    elif native.NATIVE is None:
        if REQUIRE_LIVE:
            pytest.fail("ckconv.converters._native is not built (pip install -e . needs a C compiler)")
        pytest.skip("ckconv's compiled kernels are not built")
    return request.param
