"""Ring / striped attention over torch.distributed (issue 16), gloo on localhost.

Each world (2 and 4 ranks) is ONE process group, started once per module by the
`world2` / `world4` fixtures the way torchrun starts it (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT on a free port), running every check of tests/distributed_worker.py in
order with bounded timeouts. Each rank compares against the single-process reference
it computes itself; the tests below assert on what the ranks measured.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("distributed_worker.py")
OUT_TOL, GRAD_TOL = 1e-5, 1e-4
KERNEL_CASES = [f"{layout}/causal={c}/window={w}" for layout in ("ring", "striped", "zigzag")
                for c, w in ((True, None), (True, 5), (False, None), (False, 5))]
ARCHS = ("llama", "gemma3", "qwen2", "bert")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_world(world: int, out: Path, checks: list[str], timeout: float = 240) -> list[dict]:
    """Start `world` ranks of the worker on localhost; each rank's results (dict per check)."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(out), *checks], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"world {world}: ranks did not finish within {timeout} s")
    results = []
    for rank in range(world):
        path = out / f"rank{rank}.json"
        assert path.exists(), f"rank {rank} wrote nothing: {procs[rank].stderr.read()[-3000:]}"
        results.append(json.loads(path.read_text()))
    return results


@pytest.fixture(scope="module")
def world2(tmp_path_factory):
    return run_world(2, tmp_path_factory.mktemp("world2"),
                     ["kernels", "models", "generate", "stats", "errors", "dead_rank"])


@pytest.fixture(scope="module")
def world4(tmp_path_factory):
    return run_world(4, tmp_path_factory.mktemp("world4"),
                     ["kernels", "models:striped,zigzag", "generate:striped", "stats"])


def _check(results: list[dict], name: str) -> list:
    """Every rank's result of check `name` (failing with the rank's traceback if it crashed)."""
    for rank, res in enumerate(results):
        assert name in res, f"rank {rank} did not run {name!r}"
        assert "crashed" not in res[name], f"rank {rank} crashed in {name!r}:\n{res[name]['crashed']}"
    return [res[name] for res in results]


@pytest.fixture(params=[2, 4], ids=["world2", "world4"])
def ranks(request):
    return request.getfixturevalue(f"world{request.param}")


@pytest.mark.parametrize("case", KERNEL_CASES)
def test_kernel_outputs_and_gradients_equal_eager(ranks, case):
    """Direct calls, GQA 4q/2kv, batch 2 with a padded row: every rank's output and q/k/v
    gradients equal single-process eager's on its own rows."""
    for rank, res in enumerate(_check(ranks, "kernels")):
        got = res[case]
        assert got["out"] <= OUT_TOL, (rank, got)
        assert max(got["dq"], got["dk"], got["dv"]) <= GRAD_TOL, (rank, got)
        assert got["bytes"] > 0 and got["pairs"] > 0, (rank, got)
