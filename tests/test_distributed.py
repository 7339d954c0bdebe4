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


def test_bf16_kernel_close_to_fp32_eager(ranks):
    """bf16 queries, keys and values: outputs and gradients within bf16 rounding of fp32 eager."""
    for rank, res in enumerate(_check(ranks, "kernels")):
        got = res["bf16"]
        assert got["out"] <= 2e-2 and max(got["dq"], got["dk"], got["dv"]) <= 5e-2, (rank, got)


def test_striped_and_zigzag_balance_causal_work(ranks):
    """The visible query-key pairs each rank computed (causal, no window): contiguous shards
    leave the last rank most of the work; striped and zigzag shards share it."""
    results = _check(ranks, "kernels")

    def imbalance(layout):
        pairs = [res[f"{layout}/causal=True/window=None"]["pairs"] for res in results]
        return max(pairs) / (sum(pairs) / len(pairs))

    assert imbalance("ring") > 1.25
    assert imbalance("striped") < 1.2 and imbalance("zigzag") < 1.2
    assert imbalance("ring") > imbalance("striped") > 0


MODEL_CASES = [(2, a, layout) for a in ARCHS for layout in ("ring", "striped", "zigzag")] + \
    [(4, a, layout) for a in ARCHS for layout in ("striped", "zigzag")]


@pytest.mark.parametrize("world,arch,layout", MODEL_CASES, ids=[f"w{w}-{a}-{l}" for w, a, l in MODEL_CASES])
def test_model_layers_logits_and_gradients_equal_single_process(request, world, arch, layout):
    """Stock tiny models, batch 2 with a padded row: every layer's hidden states, the
    outputs and every parameter's gradient (summed over ranks) equal single-process eager;
    `forward` returns the full outputs on rank 0 only."""
    results = _check(request.getfixturevalue(f"world{world}"), "models")
    for rank, res in enumerate(results):
        got = res[f"{arch}/{layout}"]
        assert got["layers"] <= 1e-5 and got["rows"] <= OUT_TOL, (rank, got)
        assert got["grads_rel"] <= GRAD_TOL, (rank, got)
        assert got["forward_is_none_elsewhere"], (rank, got)
    assert results[0][f"{arch}/{layout}"]["forward"] <= OUT_TOL


@pytest.mark.parametrize("world,name,layout", [(2, "llama", "ring"), (2, "llama", "striped"), (2, "gemma3", "ring"),
                                               (2, "gemma3", "striped"), (4, "llama", "striped"),
                                               (4, "gemma3", "striped")])
def test_generate_with_sharded_cache_gives_single_process_tokens(request, world, name, layout):
    for rank, res in enumerate(_check(request.getfixturevalue(f"world{world}"), "generate")):
        got = res[f"{name}/{layout}"]
        assert got["got"] == got["ref"], (rank, got)
        assert len(got["got"][0]) > 20


def test_prefill_cache_holds_only_the_local_shard(ranks):
    """Each rank's KV cache after a sharded prefill holds its own tokens (a sliding-window
    layer: at most its window), never the whole sequence."""
    from archs import WINDOW

    for res in _check(ranks, "generate"):
        llama, gemma = res["llama/cache"], res["gemma3/cache"]
        assert llama["local"] < llama["full"]
        assert llama["cached"] == [llama["local"]] * len(llama["cached"])
        assert gemma["cached"][-1] == gemma["local"]  # the full-attention layer
        assert all(c <= min(gemma["local"], WINDOW - 1) for c in gemma["cached"][:-1])


STATS = ("entropy", "entropy_norm", "sink_mass", "prev_token", "self_mass", "mean_distance", "local_mass",
         "received", "support")


@pytest.mark.parametrize("case", ["llama/striped", "llama/ring", "gemma3/striped", "gemma3/ring",
                                  "bert/striped", "bert/ring"])
def test_sharded_head_stats_equal_single_process(ranks, case):
    for rank, res in enumerate(_check(ranks, "stats")):
        got = res[case]
        assert set(got) == set(STATS), got
        assert max(got.values()) <= 1e-5, (rank, got)


def test_head_stats_frame_on_rank_zero(ranks):
    results = _check(ranks, "stats")
    frame = results[0]["frame"]
    assert frame["rows"][0] == frame["rows"][1] > 0
    assert frame["scalars"] <= 1e-5 and frame["top_same"] and frame["sinks_same"], frame
    assert all(res["frame"] == {"none": True} for res in results[1:])


def test_padding_and_errors(world2):
    """A length the ranks cannot split is padded (logits equal); the errors are clear and on every rank."""
    padded = world2[0]["errors"]["padded"]
    assert max(padded) <= OUT_TOL, padded  # 9 tokens on 2 ranks (zigzag pads to 12, striped to 10)
    for res in _check(world2, "errors"):
        assert res["no_pad"].startswith("InputError: 9 tokens do not split evenly over 2 ranks"), res
        assert res["bad_layout"] == "OptionError: unknown layout 'spiral'; valid layouts: ring, striped, zigzag"
        assert res["model_mismatch"].startswith("DistributedError: the ranks hold different models"), res
        assert res["input_mismatch"].startswith("DistributedError: the ranks hold different inputs"), res


def test_a_dead_rank_is_a_clear_error_not_a_hang(world2):
    """Rank 1 exits; rank 0's next forward fails with DistributedError within its 10 s timeout."""
    res = world2[0]["dead_rank"]
    assert "crashed" not in res, res
    assert res["error"].startswith("DistributedError: rank 0:"), res
    assert "did a rank die" in res["error"]
    assert res["seconds"] < 15
