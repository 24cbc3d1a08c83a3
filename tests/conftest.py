"""Shared test helpers: reference fixtures made by real TensorFlow, and the live-TF switch.

Live comparisons (tests marked ``live``) need TensorFlow. Locally they are skipped when it is
missing; with CKCONV_REQUIRE_LIVE=1 (set by .ci/run) a skipped live test is a failure, so CI
cannot go green without actually comparing against TensorFlow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ckconv import dtypes

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "tf"
SEED = ROOT / "examples" / "seed"
REQUIRE_LIVE = os.environ.get("CKCONV_REQUIRE_LIVE") == "1"


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.iterdir() if (p / "manifest.json").is_file())


def manifest(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "manifest.json").read_text())


def fixture_prefix(name: str) -> str:
    return str(FIXTURES / name / manifest(name)["prefix"])


def expected_array(entry: dict[str, Any]) -> np.ndarray:
    """The array TF's own reader returned when the fixture was made."""
    shape = tuple(entry["shape"])
    if entry["dtype"] == "string":
        out = np.empty(len(entry["strings"]), dtype=object)
        for i, h in enumerate(entry["strings"]):
            out[i] = bytes.fromhex(h)
        return out.reshape(shape)
    dt = dtypes.by_name(entry["dtype"])
    return np.frombuffer(bytes.fromhex(entry["data"]), dtype=dt.numpy).reshape(shape)


def assert_bit_exact(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    assert actual.shape == expected.shape, what
    if expected.dtype == object:
        assert actual.dtype == object, what
        assert actual.reshape(-1).tolist() == expected.reshape(-1).tolist(), what
    else:
        assert actual.dtype == expected.dtype, f"{what}: {actual.dtype} != {expected.dtype}"
        assert np.ascontiguousarray(actual).tobytes() == np.ascontiguousarray(expected).tobytes(), what


def live_tf():
    """Import TensorFlow for a live comparison (skip locally if missing, fail in CI)."""
    if REQUIRE_LIVE:
        import tensorflow as tf  # noqa: F401  (an ImportError fails the test)

        return tf
    return pytest.importorskip("tensorflow")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    is_live = item.get_closest_marker("live") is not None or "tf" in getattr(item, "fixturenames", ())
    if REQUIRE_LIVE and report.skipped and is_live:
        report.outcome = "failed"
        report.longrepr = f"live comparison skipped in CI: {report.longrepr}"
