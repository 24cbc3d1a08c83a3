"""Remote conversion against s3fs's own transfer of the same bytes, on a local S3 server.

    python bench/remote.py [--dir DIR] [--rounds N]

Makes a ~1 GiB TF1 checkpoint with TensorFlow (bench/make_inputs.py), starts moto's S3
server on 127.0.0.1 in its own process, uploads the checkpoint, then alternates, each in a
fresh process:

* s3fs: ``get`` of the checkpoint's files, then ``put`` of its data file under another key
  (the bytes a conversion must at least move: the source down, an output of the same size
  up). ``get`` streams one request (``max_concurrency=1``): moto answers each ranged GET by
  copying the whole object, so s3fs's default of 10 parallel ranges would hold ~10 GiB in
  the server (and be slower against it); ``put`` uses s3fs's defaults;
* ckconv: ``ckconv s3://bench/src/model.ckpt-1000 s3://bench/out/model.safetensors``.

Reports each contender's wall time (median of the rounds, with the spread), ckconv's time
over s3fs's, and peak RSS (``ru_maxrss`` of the process). The server's own work (moto keeps
objects in spooled temporary files and copies them per request) is in both timings alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_S3FS = r"""
import json, os, resource, sys, tempfile, time, s3fs
opts = json.loads(sys.argv[1])
fs = s3fs.S3FileSystem(**opts)
start = time.perf_counter()
with tempfile.TemporaryDirectory(dir=os.environ.get("CKCONV_TMPDIR")) as d:
    files = [p for p in fs.ls("bench/src", refresh=True)]
    for p in files:
        fs.get_file(p, os.path.join(d, p.rsplit("/", 1)[1]), max_concurrency=1)
    data = [f for f in os.listdir(d) if ".data-" in f][0]
    fs.put_file(os.path.join(d, data), "bench/copy/" + data)
print(json.dumps({"seconds": time.perf_counter() - start,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

_UPLOAD = r"""
import json, os, sys, s3fs
opts = json.loads(sys.argv[1])
src = opts.pop("src")
fs = s3fs.S3FileSystem(**opts)
fs.mkdir("bench")
size = 0
for f in os.listdir(src):
    fs.put_file(os.path.join(src, f), "bench/src/" + f)
    size += os.path.getsize(os.path.join(src, f))
print(json.dumps({"bytes": size}))
"""

_CKCONV = r"""
import json, os, resource, sys, time
start = time.perf_counter()
from ckconv.cli.main import main
opts = json.loads(sys.argv[1])
argv = ["s3://bench/src/model.ckpt-1000", "s3://bench/out/model.safetensors", "-q"]
argv += [f"--storage-option={k}={v}" for k, v in opts.items()]
code = main(argv)
print(json.dumps({"seconds": time.perf_counter() - start, "code": code,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def make_input(directory: str) -> str:
    prefix = os.path.join(directory, "big1g", "model.ckpt-1000")
    if not os.path.exists(prefix + ".index"):
        code = (f"import sys; sys.path.insert(0, {HERE!r}); import make_inputs; "
                f"make_inputs.big({prefix!r}, 1)")
        subprocess.run([sys.executable, "-c", code], check=True)
    return prefix


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, str]:
    import socket

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def child(code: str, opts: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code, json.dumps(opts)], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"contender failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "ckconv-bench"))
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    prefix = make_input(args.dir)
    proc, endpoint = start_server()
    opts = {"endpoint_url": endpoint, "key": "bench", "secret": "bench"}
    try:
        # The upload runs in a child: a child process starts with its parent's peak RSS
        # (Linux carries it across fork and exec), and s3fs's put holds ~1 GiB here.
        size = child(_UPLOAD, dict(opts, src=os.path.dirname(prefix)))["bytes"]
        import s3fs

        fs = s3fs.S3FileSystem(**opts)
        times: dict[str, list[float]] = {"s3fs get + put": [], "ckconv": []}
        rss: dict[str, int] = {k: 0 for k in times}
        contenders = {"s3fs get + put": _S3FS, "ckconv": _CKCONV}
        for name in contenders:  # untimed warm-up round: the server's first transfers
            child(contenders[name], opts)
        order = list(contenders)
        for i in range(args.rounds):
            # ABBA: each contender runs as often first as second (the server's state after
            # the other one's transfers is the same for both)
            for name in (order if i % 2 == 0 else order[::-1]):
                for leftover in ("bench/out", "bench/copy"):
                    if fs.exists(leftover):
                        fs.rm(leftover, recursive=True)
                r = child(contenders[name], opts)
                assert r.get("code", 0) == 0, r
                times[name].append(r["seconds"])
                rss[name] = max(rss[name], r["rss"])
                print(f"  {name}: {r['seconds']:.2f} s, peak RSS {r['rss'] / 2**20:.0f} MiB",
                      flush=True)
                if name == "ckconv":
                    out_size = sum(fs.size(p) for p in fs.ls("bench/out", refresh=True))
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"input {size / 2**30:.2f} GiB (TF, 1 data file), output {out_size / 2**30:.2f} GiB "
          f"safetensors; moto S3 server on 127.0.0.1; {args.rounds} rounds")
    print(f"{'contender':<16} {'median s':>9} {'range s':>13} {'peak RSS':>10}")
    for name, ts in times.items():
        print(f"{name:<16} {statistics.median(ts):9.2f} {min(ts):6.2f}-{max(ts):<6.2f} "
              f"{rss[name] / 2**20:8.0f} MiB")
    ratio = statistics.median(times["ckconv"]) / statistics.median(times["s3fs get + put"])
    print(f"ckconv / s3fs: {ratio:.2f}x")


if __name__ == "__main__":
    main()
