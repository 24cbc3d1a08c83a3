"""The long, on-demand fuzz campaign (CI runs the short one in ``tests/test_fuzz.py``).

    python -m fuzz.run                       # every target, 10 minutes, built-in mutator
    python -m fuzz.run --seconds 3600 --target bundle_index --target sstable_block
    python -m fuzz.run --atheris --seconds 600   # coverage-guided (pip install atheris)
    python -m fuzz.run --replay fuzz/findings/bundle_index-escape-0123abcd4567

Findings (the input plus a .txt with the traceback) are saved under ``fuzz/findings/``.
With ``--atheris`` each target runs in its own libFuzzer process whose corpus, seeded from
the fixtures, is kept in ``fuzz/corpus/<target>/`` so later campaigns resume from it.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from fuzz import harness, mutate, targets  # noqa: E402


def _pick(names: list[str]) -> list[targets.Target]:
    chosen = [targets.TARGETS[n] for n in names] if names else targets.available()
    return [t for t in chosen if t.available() and t.seeds()]


def builtin_campaign(chosen: list[targets.Target], seconds: float, seed: int,
                     stop_on_first: bool = False) -> int:
    """Round-robin mutation of each target's seeds until the time is up; returns findings."""
    rng = random.Random(seed)
    findings = 0
    total = 0
    with tempfile.TemporaryDirectory(prefix="ckconv-fuzz-") as tmp:
        runners = {t.name: harness.Runner(t, Path(tmp) / t.name) for t in chosen}
        corpora = {t.name: t.seeds() for t in chosen}
        deadline = time.monotonic() + seconds
        slice_end = 0.0
        while time.monotonic() < deadline:
            for t in chosen:
                runner = runners[t.name]
                slice_end = min(deadline, time.monotonic() + 5.0)
                with runner:
                    while time.monotonic() < slice_end:
                        base = rng.choice(corpora[t.name])
                        data = mutate.apply(base, mutate.random_mutations(rng))
                        try:
                            runner.run(data)
                        except harness.Finding as f:
                            findings += 1
                            print(f, file=sys.stderr)
                            harness.report(f)
                            if stop_on_first:
                                return findings
                if time.monotonic() >= deadline:
                    break
        for name, runner in runners.items():
            total += runner.count
            print(f"{name:15s} {runner.count:9d} inputs   slowest {runner.slowest * 1000:7.1f} ms")
    print(f"total {total} inputs in {seconds:.0f} s, {findings} finding(s)")
    return findings


def atheris_campaign(chosen: list[targets.Target], seconds: float, extra: list[str]) -> int:
    """One libFuzzer process per target, each given an equal share of the time."""
    share = max(10, int(seconds / max(1, len(chosen))))
    failed = 0
    for t in chosen:
        corpus = HERE / "corpus" / t.name
        corpus.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(t.seeds()):
            (corpus / f"seed-{i:04d}").write_bytes(s)
        crashes = HERE / "findings"
        crashes.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "fuzz.run", "--atheris-worker", t.name, "--",
               str(corpus), f"-max_total_time={share}", "-timeout=2", "-rss_limit_mb=2048",
               "-max_len=131072", "-len_control=0", f"-artifact_prefix={crashes}/{t.name}-", *extra]
        print("$", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd, cwd=HERE.parent)
        failed += rc != 0
    return failed


def atheris_worker(name: str, argv: list[str]) -> None:
    import atheris

    target = targets.TARGETS[name]
    target.seeds()  # imports what the target uses, so it gets instrumented below
    atheris.instrument_all()  # ckconv was imported before atheris: rewrite loaded bytecode
    work = Path(tempfile.mkdtemp(prefix=f"ckconv-atheris-{name}-"))
    runner = harness.Runner(target, work)
    runner.__enter__()

    def one_input(data: bytes) -> None:
        runner.run(data)  # a Finding propagates: libFuzzer saves the input as a crash

    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()


def replay(paths: list[str]) -> int:
    bad = 0
    for p in paths:
        name = Path(p).name.split("-")[0]
        target = targets.TARGETS[name]
        with tempfile.TemporaryDirectory() as tmp, harness.Runner(target, Path(tmp)) as runner:
            try:
                runner.run(Path(p).read_bytes())
                print(f"{p}: ok")
            except harness.Finding as f:
                bad += 1
                print(f)
    return bad


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--atheris-worker"]:
        rest = argv[3:] if argv[2:3] == ["--"] else argv[2:]
        atheris_worker(argv[1], rest)
        return 0
    p = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", action="append", default=[], choices=sorted(targets.TARGETS))
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--seed", type=int, default=int(os.environ.get("CKCONV_FUZZ_SEED", time.time())))
    p.add_argument("--atheris", action="store_true", help="coverage-guided, via atheris/libFuzzer")
    p.add_argument("--stop-on-first", action="store_true")
    p.add_argument("--replay", nargs="+", metavar="FILE")
    p.add_argument("libfuzzer_args", nargs="*", help="extra libFuzzer flags (after --)")
    args = p.parse_args(argv)
    if args.replay:
        return 1 if replay(args.replay) else 0
    chosen = _pick(args.target)
    print("targets:", ", ".join(t.name for t in chosen), f"(seed {args.seed})")
    if args.atheris:
        return 1 if atheris_campaign(chosen, args.seconds, args.libfuzzer_args) else 0
    return 1 if builtin_campaign(chosen, args.seconds, args.seed, args.stop_on_first) else 0


if __name__ == "__main__":
    sys.exit(main())
