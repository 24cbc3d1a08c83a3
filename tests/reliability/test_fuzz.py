"""The bounded fuzz campaign CI runs on every change (the long one is ``python -m fuzz.run``).

hypothesis drives AFL-style mutations (``fuzz/mutate.py``) of seeds taken from real
TF-made files (and the other formats' fixtures) through every parser target in
``fuzz/targets.py``. Each case must end normally or with a ``CkconvError``, within 2 s and
without allocating more than a small multiple of its input (``fuzz/harness.py``).

``CKCONV_FUZZ_SCALE`` multiplies the per-target budgets below (0.1 for a quick local run,
10 for a deeper one); hypothesis picks new random inputs on every run and prints a
reproducer (``@reproduce_failure``) for a failure; the shrunk input is also saved under
``fuzz/findings/`` for ``python -m fuzz.run --replay``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fuzz import harness, mutate, targets  # noqa: E402

SCALE = float(os.environ.get("CKCONV_FUZZ_SCALE", "1"))
#: Inputs per target, weighted by cost (a case takes 0.05 ms to 10 ms): 21,000 in all,
#: about two minutes of CPU on the CI machine. ``pickle`` (about 10 ms a case) took 500
#: of ``torch``'s inputs, which share most of its reader; ``snappy`` and ``v1_entries`` took
#: 2,000 from the four SSTable-level targets (Snappy cases are cheap, V1 ones write a table).
BUDGET = {"sstable_file": 2500, "sstable_block": 2500, "slice_key": 2500, "string_tensor": 2500,
          "bundle_index": 2000, "state_file": 1500, "torch": 1000, "pickle": 500,
          "bundle_data": 1000, "safetensors": 1000, "hdf5": 1000, "any_file": 1000,
          "snappy": 1500, "v1_entries": 500}
MINIMUM_TOTAL = 20_000

_STATS: dict[str, tuple[int, float, float]] = {}  # target -> (inputs, seconds, slowest case)

_MUTATIONS = st.lists(
    st.tuples(st.integers(0, len(mutate.OPS) - 1), st.integers(0, 2**32 - 1),
              st.integers(0, 2**40 - 1)),
    min_size=1, max_size=8)


# A case is a recipe, not bytes, so a failure prints short: (seed number, mutations).
_MUTATED = st.tuples(st.just("mutated"), st.integers(0, 10**6), _MUTATIONS)
_CASES = st.one_of(_MUTATED, _MUTATED, _MUTATED, _MUTATED, _MUTATED, _MUTATED, _MUTATED,
                   st.tuples(st.just("seed"), st.integers(0, 10**6), st.just([])),
                   st.tuples(st.just("noise"), st.binary(max_size=512), st.just([])))


def _bytes(case: tuple, seeds: list[bytes]) -> bytes:
    kind, which, mutations = case
    if kind == "noise":
        return which
    return mutate.apply(seeds[which % len(seeds)], mutations)


@pytest.mark.parametrize("name", list(targets.TARGETS))
def test_fuzz_target(name: str, tmp_path: Path) -> None:
    target = targets.TARGETS[name]
    if not target.available():
        pytest.skip(f"{name}: its reader is not part of this build")
    seeds = target.seeds()
    if not seeds:
        pytest.skip(f"{name}: no seed files")
    runner = harness.Runner(target, tmp_path, trace_every=4)
    examples = max(1, int(BUDGET.get(name, 1000) * SCALE))

    @settings(max_examples=examples, deadline=None, database=None, print_blob=True,
              phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck))
    @given(case=_CASES)
    def campaign(case: tuple) -> None:
        runner.run(_bytes(case, seeds))  # raises harness.Finding, which hypothesis shrinks

    start = time.perf_counter()
    with runner:
        try:
            for s in seeds:  # every real file as is, first: they must all pass
                runner.run(s)
            campaign()
        except harness.Finding as finding:  # the shrunk one: keep it for `fuzz.run --replay`
            harness.report(finding)
            raise
    _STATS[name] = (runner.count, time.perf_counter() - start, runner.slowest)


def test_campaign_size(capsys: pytest.CaptureFixture[str]) -> None:
    """At least 20,000 inputs per run when every target ran; prints the figures."""
    if not _STATS:
        pytest.skip("no fuzz target ran in this session")
    total = sum(n for n, _, _ in _STATS.values())
    seconds = sum(s for _, s, _ in _STATS.values())
    lines = [f"  {name:14s} {n:6d} inputs {s:6.1f} s  slowest case {slow * 1000:6.0f} ms"
             for name, (n, s, slow) in _STATS.items()]
    with capsys.disabled():
        print(f"\nfuzz campaign: {total} inputs over {len(_STATS)} targets in {seconds:.0f} s")
        print("\n".join(lines))
    report = os.environ.get("CKCONV_FUZZ_REPORT")
    if report:
        Path(report).write_text(f"{total} inputs, {len(_STATS)} targets, {seconds:.0f} s\n"
                                + "\n".join(lines) + "\n")
    ran_all = len(_STATS) == sum(1 for t in targets.TARGETS.values() if t.available())
    if ran_all and SCALE >= 1:
        assert total >= MINIMUM_TOTAL
