"""`torchrun --nproc-per-node 2 attnlab inspect ...`: sharded statistics, rank 0 alone prints and
writes, and heads.csv equals the single-process run's."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd

from helpers import save_tiny_llama

PROMPT = ("To be, or not to be, that is the question: whether tis nobler in the mind to suffer the slings "
          "and arrows of outrageous fortune, or to take arms against a sea of troubles")


def _attnlab() -> str:
    """The attnlab console script itself (a pyenv shim is a shell script torchrun cannot run)."""
    script = Path(sys.executable).with_name("attnlab")
    return str(script if script.exists() else shutil.which("attnlab"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_inspect_equals_single_process(tmp_path):
    model = save_tiny_llama(tmp_path / "tiny")
    args = ["inspect", "--model", str(model), "--prompt", PROMPT, "--no-probes", "--format", "json"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([_attnlab(), *args, "--out", str(tmp_path / "one")], env=env, capture_output=True,
                         text=True, timeout=120)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", str(_port()), _attnlab(), *args, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    summary = json.loads(two.stdout)  # one JSON document: only rank 0 printed
    assert summary["ranks"] == 2 and summary["n_tokens"] == json.loads(one.stdout)["n_tokens"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["heads.csv", "heads.json", "report.html"]
    a, b = pd.read_csv(tmp_path / "one" / "heads.csv"), pd.read_csv(tmp_path / "two" / "heads.csv")
    num = a.select_dtypes("number").columns
    assert list(a.columns) == list(b.columns) and len(a) == len(b) == 12
    assert float((a[num] - b[num]).abs().max().max()) <= 1e-5
    assert (a.drop(columns=num).astype(str) == b.drop(columns=num).astype(str)).all().all()
