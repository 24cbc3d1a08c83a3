"""The command line: conversion, inspect, error lines and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ckconv.cli.main import FORMAT_NAMES, main
from tests.helpers import SEED, fixture_prefix, manifest


def test_format_choices_match_registry():
    from ckconv import formats

    assert tuple(FORMAT_NAMES) == formats.NAMES


def test_convert_seed_example(tmp_path, capsys):
    from safetensors.numpy import load_file

    dst = tmp_path / "out.safetensors"
    assert main([str(SEED / "my_model"), str(dst)]) == 0
    assert sorted(load_file(str(dst))) == ["w1", "w2"]


def test_inspect_table_and_json(capsys):
    prefix = fixture_prefix("tf1_saver")
    assert main(["inspect", prefix]) == 0
    out = capsys.readouterr().out
    assert "global_step" in out and "int64" in out
    assert main(["inspect", prefix, "--json", "--values", "global_step"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = {t["name"] for t in doc["tensors"]}
    assert names == set(manifest("tf1_saver")["tensors"])
    assert doc["values"]["global_step"] == 3


def test_inspect_unknown_value_name_is_usage_error(capsys):
    assert main(["inspect", fixture_prefix("tf1_saver"), "--values", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_missing_input_exit_1_one_line(tmp_path, capsys):
    code = main([str(tmp_path / "nothing"), str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ")
    assert os.listdir(tmp_path) == []


def test_unknown_output_extension_is_usage_error(tmp_path, capsys):
    code = main([fixture_prefix("strings"), str(tmp_path / "o.weird")])
    assert code == 2 and "--to" in capsys.readouterr().err


def test_argparse_usage_error_exits_2_in_one_line(capsys):
    assert main(["--bogus"]) == 2
    err = capsys.readouterr().err
    assert err == "error: unrecognized arguments: --bogus (see 'ckconv --help')\n"


def test_import_ckconv_pulls_in_no_framework():
    code = ("import sys, ckconv, ckconv.cli.main; ckconv.load; "
            "bad = [m for m in ('torch', 'tensorflow', 'h5py', 'jax') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_console_script_help():
    res = subprocess.run([sys.executable, "-m", "ckconv", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "inspect" in res.stdout
