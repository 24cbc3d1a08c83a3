"""Benchmark rows for conversions that change bytes, and for loading into PyTorch.

    python bench/run.py --only bert --only cast-bf16 ...   # through run.py (see its --help)
    python bench/transforms.py [--repeat N] [--only CASE]  # these rows alone

Each transform is timed against `cp` of a file with the output's bytes (the floor: writing
that many bytes), the BERT preset also against transformers 4.46's
``load_tf_weights_in_bert`` + ``save_pretrained`` (a Python with transformers 4.46, torch
and TensorFlow: ``--hf446``, default ``$CKCONV_HF446_PYTHON``). ``.torch()`` is timed
against ``safetensors.torch.load_file`` of the same tensors; both then read one byte of
every page of every tensor, so mapped tensors are paid for as copied ones are.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

import run
from run import CKCONV, PY, Contender, bench_case_custom, drop_caches

HERE = os.path.dirname(os.path.abspath(__file__))

HF_BERT = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from transformers import BertConfig, BertForPreTraining, load_tf_weights_in_bert
config = BertConfig()  # BERT-base: 12 layers, hidden 768, vocabulary 30522
model = BertForPreTraining(config)
load_tf_weights_in_bert(model, config, sys.argv[1])
model.save_pretrained(sys.argv[2])
"""

TOUCH = """
def touch(tensors):
    total = 0
    for t in tensors.values():
        raw = t.reshape(-1).view(torch.uint8)
        total += int(raw[::4096].sum())  # one byte of every page
    return total
"""
CKCONV_TORCH = "import sys, torch, ckconv\n" + TOUCH + """
m = ckconv.load(sys.argv[1])
if len(sys.argv) > 2:
    m = m.map(ckconv.rules.preset(sys.argv[2]))
touch(m.torch())
"""
LOAD_FILE = "import sys, torch\nfrom safetensors.torch import load_file\n" + TOUCH + \
    "touch(load_file(sys.argv[1]))\n"

SPLIT = """
[[rule]]
match = '^(encoder/layer_\\d+)/kernel$'
rename = '\\1/\\g<part>/kernel'
split = { axis = 1, parts = ["q", "k", "v"], sizes = [1024, 768, 768] }
"""
MERGE = """
[[rule]]
match = '^(encoder/layer_\\d+)/(?P<part>q|k|v)/kernel$'
rename = '\\1/kernel'
merge = { axis = 1, parts = ["q", "k", "v"] }
"""

#: case: (max ratio to cp, min speed-up over the framework path, max RSS MiB); the issue's
#: targets. For the .torch() rows the "framework" is safetensors.torch.load_file, and
#: ckconv may take at most 1.3x its time (a speed-up of at least 1/1.3).
TARGETS = {
    "bert": (2.0, 15.0, 256),
    "cast-bf16": (2.0, None, 256), "cast-f16": (2.0, None, 256),
    "bf16-f32": (2.0, None, 256), "f16-f32": (2.0, None, 256),
    "split": (2.0, None, 256), "merge": (2.0, None, 256),
    "torch-tf": (None, 1 / 1.3, None), "torch-safetensors": (None, 1 / 1.3, None),
    "torch-bert": (None, 1 / 1.3, None),
}
CASES = list(TARGETS)


def _make(argv: list[str], output: str) -> str:
    if not os.path.exists(output) and not os.path.exists(output + ".index"):
        subprocess.run(argv, check=True)
    return output


def inputs(data: str, gib: int, scale: int) -> dict[str, str]:
    """Every input and every `cp` stand-in, made once under ``data``."""
    subprocess.run([PY, os.path.join(HERE, "make_inputs.py"), data, "--gib", str(gib)], check=True)
    bert = subprocess.run([PY, os.path.join(HERE, "make_bert.py"), data, "--scale", str(scale)],
                          check=True, capture_output=True, text=True).stdout.strip()
    big = os.path.join(data, f"big{gib}g", "model.ckpt-1000")
    derived = os.path.join(data, f"derived{gib}g")
    os.makedirs(derived, exist_ok=True)
    with open(os.path.join(derived, "split.toml"), "w") as f:
        f.write(SPLIT)
    with open(os.path.join(derived, "merge.toml"), "w") as f:
        f.write(MERGE)
    p = {"big": big, "bert": bert, "derived": derived,
         "split_rules": os.path.join(derived, "split.toml"),
         "merge_rules": os.path.join(derived, "merge.toml")}
    d = lambda name: os.path.join(derived, name)  # noqa: E731
    p["f32"] = _make(CKCONV + [big, d("model.safetensors"), "-q"], d("model.safetensors"))
    p["bf16"] = _make(CKCONV + [big, d("bf16.safetensors"), "--dtype", "bf16", "-q"],
                      d("bf16.safetensors"))
    p["f16"] = _make(CKCONV + [big, d("f16.safetensors"), "--dtype", "fp16", "-q"],
                     d("f16.safetensors"))
    bert_out = os.path.join(os.path.dirname(bert), "converted.safetensors")
    p["bert_out"] = _make(CKCONV + [bert, bert_out, "--preset", "bert", "-q"], bert_out)
    p["split_out"] = _make(CKCONV + [big, d("split.safetensors"), "--rules", p["split_rules"],
                                     "-q"], d("split.safetensors"))
    return p


def contenders(case: str, p: dict[str, str], out: str, hf446: str) -> tuple[list[Contender], str]:
    """The contenders of a case: cp (or load_file), ckconv, maybe a framework."""
    dst = os.path.join(out, f"{case}.safetensors")
    cp_out = os.path.join(out, "cp.out")

    def cp(of: str) -> Contender:
        return Contender("cp", ["cp", of, cp_out], cp_out, of)

    if case == "bert":
        fw = [Contender("framework", [hf446, "-c", HF_BERT, p["bert"], os.path.join(out, "hf-bert")],
                        os.path.join(out, "hf-bert"), p["bert"])] if hf446 else []
        return [cp(p["bert_out"]), Contender("ckconv", CKCONV + [p["bert"], dst, "--preset", "bert",
                                                                  "-q"], dst, p["bert"])] + fw, ""
    conversions = {  # case: (source, ckconv options, file with the output's bytes)
        "cast-bf16": (p["big"], ["--dtype", "bf16"], p["bf16"]),
        "cast-f16": (p["big"], ["--dtype", "fp16"], p["f16"]),
        "bf16-f32": (p["bf16"], ["--dtype", "fp32"], p["f32"]),
        "f16-f32": (p["f16"], ["--dtype", "fp32"], p["f32"]),
        "split": (p["big"], ["--rules", p["split_rules"]], p["split_out"]),
        "merge": (p["split_out"], ["--rules", p["merge_rules"]], p["f32"]),
    }
    if case in conversions:
        src, options, like = conversions[case]
        return [cp(like), Contender("ckconv", CKCONV + [src, dst] + options + ["-q"], dst, src)], ""
    src, preset, same = {"torch-tf": (p["big"], [], p["f32"]),
                         "torch-safetensors": (p["f32"], [], p["f32"]),
                         "torch-bert": (p["bert"], ["bert"], p["bert_out"])}[case]
    nothing = os.path.join(out, "nothing-written")  # run_once removes a contender's output
    return [Contender("ckconv", [PY, "-c", CKCONV_TORCH, src] + preset, nothing, src),
            Contender("framework", [PY, "-c", LOAD_FILE, same], nothing, same)], "load_file"


def main(argv: "list[str] | None" = None) -> list[str]:
    a = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--gib", type=int, default=1)
    a.add_argument("--bert-scale", type=int, default=1, help="encoder layers x12")
    a.add_argument("--repeat", type=int, default=5)
    a.add_argument("--framework-repeat", type=int, default=3)
    a.add_argument("--data", default=os.path.join(HERE, "data"))
    a.add_argument("--only", action="append", choices=CASES)
    a.add_argument("--hf446", default=os.environ.get("CKCONV_HF446_PYTHON", ""),
                   help="a Python with transformers 4.46, torch and TensorFlow")
    args = a.parse_args(argv)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    # The children run this checkout's ckconv, whatever is installed (an editable install
    # may point at another checkout).
    root = os.path.dirname(HERE)
    os.environ["PYTHONPATH"] = root + os.pathsep + os.environ.get("PYTHONPATH", "")
    subprocess.run([PY, "-m", "compileall", "-q", os.path.join(root, "ckconv")], check=True,
                   stdout=subprocess.DEVNULL)
    p = inputs(args.data, args.gib, args.bert_scale)
    out = os.path.join(args.data, "out")
    os.makedirs(out, exist_ok=True)
    rows = []
    for case in args.only or CASES:
        # transformers' BERT-base model takes 12 layers only: no framework at other scales
        hf446 = args.hf446 if args.bert_scale == 1 else ""
        cs, framework_label = contenders(case, p, out, hf446)
        drop_caches()
        bench_case_custom(cs, args.repeat, args.framework_repeat)
        rows += report(case, cs, framework_label)
    return rows


def report(case: str, cs: list[Contender], framework_label: str) -> list[str]:
    run.TARGETS.setdefault(case, TARGETS[case])
    if not framework_label:
        return run.report(case, cs)
    med = {c.name: statistics.median(c.times) for c in cs}
    ck, ref = med["ckconv"], med["framework"]
    out = []
    for c in cs:
        rss = max(c.rss_kib) / 1024
        spread = f"{min(c.times):.2f}-{max(c.times):.2f}"
        if c.name == "ckconv":
            verdict = f"{'PASS' if ck <= 1.3 * ref else 'FAIL'} (<= 1.3x {framework_label})"
            out.append(f"| {case} | ckconv `.torch()` | {ck:.2f} s ({spread}) | - | "
                       f"{ck / ref:.2f}x {framework_label} | {rss:.0f} MiB | {verdict} |")
        else:
            out.append(f"| {case} | {framework_label} | {ref:.2f} s ({spread}) | - | - | "
                       f"{rss:.0f} MiB |  |")
    return out


if __name__ == "__main__":
    lines = main()
    print("| case | contender | median wall (min-max) | vs cp | vs framework | peak RSS | target |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    sys.exit(0)
