"""Benchmark measurements on a tiny random model, the parity gate, and one end-to-end CLI run."""

import json
import math

import pytest
import torch

import tiny
from attnlab.bench import measure, worker
from attnlab.kernels import KERNELS, Kernel
from attnlab.core.session import attach


@pytest.mark.parametrize("build", [tiny.llama, tiny.gemma3], ids=["llama", "gemma3"])
def test_nll_sum_matches_the_models_own_loss(build):
    model = build()
    ids = torch.randint(0, tiny.VOCAB, (1, 40), generator=torch.Generator().manual_seed(0))  # [1, 40]
    with attach(model, "sdpa"):
        hidden, cache, seconds = measure.prefill(model, ids)
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss
    nll, count = measure.nll_sum(model, hidden, ids, first=0)
    assert count == 39 and seconds > 0
    assert nll / count == pytest.approx(float(loss), rel=1e-5)
    nll_tail, count_tail = measure.nll_sum(model, hidden, ids, first=30)
    assert count_tail == 9 and nll_tail < nll


def test_kl_is_zero_for_identical_and_positive_for_different_distributions():
    lp = torch.log_softmax(torch.randn(5, 11), -1)  # [P, V]
    assert measure.mean_kl(lp, lp) == pytest.approx(0.0, abs=1e-7)
    other = torch.log_softmax(torch.randn(5, 11), -1)
    assert measure.mean_kl(lp, other) > 0.01
    assert measure.kl_positions(101, 10, 9) == [10 + 10 * i for i in range(9)]
    assert len(measure.kl_positions(20, 15, 50)) == 4


def test_attention_timer_and_decode_speed():
    model = tiny.llama()
    ids = torch.randint(0, tiny.VOCAB, (1, 24))
    timer = measure.AttentionTimer()
    with attach(model, "sdpa", observe=[timer]) as session:
        hidden, cache, _ = measure.prefill(model, ids)
        rate = measure.decode_speed(model, hidden, cache, steps=3)
    assert timer.seconds["prefill"] > 0 and timer.seconds["decode"] > 0
    assert session.calls_by_phase["decode"] == 3 * model.config.num_hidden_layers
    assert rate > 0 and math.isnan(measure.decode_speed(model, hidden, cache, 0))


def _scaled_sdpa(call, hooks):
    out = KERNELS["sdpa"].forward(call, hooks)
    out.output = out.output * 1.01
    return out


def test_parity_gate_passes_exact_kernels_and_catches_a_wrong_one(monkeypatch):
    model = tiny.llama()
    ids = torch.randint(0, tiny.VOCAB, (1, 48))
    task = {"parity_tokens": 32, "dense": "sdpa", "kernel": "eager", "parity_params": {"block_size": 8}}
    good = worker._parity(model, ids, task)
    assert good["ok"] and good["tokens"] == 32 and good["max_abs_logit_diff"] < 1e-4
    monkeypatch.setitem(KERNELS, "broken", Kernel(_scaled_sdpa, False, "test: off by 1%"))
    bad = worker._parity(model, ids, {**task, "kernel": "broken", "parity_params": {}})
    assert bad["ok"] is False and bad["max_abs_logit_diff"] > worker.PARITY_TOL
    skipped = worker._parity(model, ids, {**task, "parity_params": None})
    assert skipped["ok"] is None


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random Llama with the real SmolLM2 tokenizer, saved as a model folder."""
    from helpers import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tinyllama"))


def test_bench_cli_end_to_end_writes_all_outputs(tiny_folder, tmp_path):
    from typer.testing import CliRunner

    from attnlab.cli import build_app

    out = tmp_path / "out"
    args = ["bench", "--model", str(tiny_folder), "--kernels", "eager:block_size=16,eager@repeats=1@needles=0@max_length=64",
            "--lengths", "64,128", "--needles", "2", "--needle-lengths", "96", "--repeats", "2",
            "--decode-steps", "2", "--corpus", "kjv:ge1:1-5:32", "--out", str(out), "--format", "json",
            "--no-isolate"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {(r["kernel"], r["length"]): r for r in report["rows"]}
    assert set(rows) == {(k, n) for k in ("sdpa", "eager:block_size=16") for n in (64, 128)} | {("eager", 64)}
    for (kernel, n), r in rows.items():
        assert r["parity_ok"] and r["kl"] == pytest.approx(0.0, abs=1e-5)
        assert r["ppl"] == pytest.approx(rows[("sdpa", n)]["ppl"], rel=1e-4)  # exact kernels
        assert r["repeats"] == (1 if kernel == "eager" else 2) and r["peak_rss_mb"] > r["prefill_rss_mb"] > -1
        assert r["decode_tok_s"] > 0 and 0 < r["attention_share"] < 1
    assert rows[("sdpa", 64)]["speedup"] == 1.0
    assert set(report["needles"]) == {"sdpa", "eager:block_size=16"}  # @needles=0 skips
    assert report["needles"]["sdpa"]["n"] == 2
    assert (out / "bench.csv").read_text().count("\n") == 6
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == ["bench.csv", "bench.json", "pareto.png"]


def test_bench_cli_errors_are_clean_and_write_nothing(tiny_folder, tmp_path):
    from typer.testing import CliRunner

    from attnlab.cli import build_app

    runner, out = CliRunner(), tmp_path / "none"
    for extra, message in ((["--kernels", "nope"], "unknown kernel 'nope'"),
                           (["--lengths", "100000"], "fewer than the longest length"),
                           (["--corpus", "nothing"], "unknown corpus")):
        result = runner.invoke(build_app(), ["bench", "--model", str(tiny_folder), "--out", str(out),
                                             "--corpus", "kjv:ge1:1-2:25", "--needles", "0"] + extra)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_each_cell_runs_in_a_fresh_process(tiny_folder, tmp_path):
    from attnlab.bench.run import run_bench
    from attnlab.bench.spec import BenchConfig, parse_kernels

    config = BenchConfig(out=tmp_path, model=str(tiny_folder), kernels=parse_kernels("sdpa"), lengths=(64,),
                         corpus="kjv:ge1:1-2:25", needles=0, repeats=1, decode_steps=1, threads=1)
    seen, raw = [], []
    report = run_bench(config, progress=lambda done, total, text: seen.append((done, total, text)),
                       on_result=lambda task, result: raw.append((task["label"], result["ppl"])))
    (row,) = report["rows"]
    assert raw == [("sdpa", row["ppl"])]
    assert row["kernel"] == "sdpa" and row["length"] == 64 and row["ppl"] > 1
    assert seen == [(0, 1, "sdpa @ 64"), (1, 1, "done")]


def test_peak_rss_after_reset_sees_only_later_work():
    big = torch.ones(50_000_000)  # 200 MB
    del big
    assert measure.reset_peak_rss()
    before = measure.peak_rss_mb()
    assert before < measure.rss_mb() + 50  # the 200 MB peak is forgotten
    import mmap

    fresh = mmap.mmap(-1, 100 << 20)  # 100 MB of new pages: a freed allocator pool cannot serve them
    fresh.write(b"\x01" * (100 << 20))  # touched, so resident
    assert measure.peak_rss_mb() - before > 80
    fresh.close()


def _raising(call, hooks):
    raise RuntimeError("kernel exploded")


def test_a_failing_sparse_kernel_stops_the_run_unless_keep_going(tiny_folder, tmp_path, monkeypatch):
    from attnlab.bench.run import BenchError, run_bench
    from attnlab.bench.spec import BenchConfig, parse_kernels

    monkeypatch.setitem(KERNELS, "exploding", Kernel(_raising, False, "test: raises"))

    def config(keep_going, out):
        return BenchConfig(out=out, model=str(tiny_folder), kernels=parse_kernels("exploding"), lengths=(32,),
                           corpus="kjv:ge1:1-2:25", needles=0, repeats=1, decode_steps=1, parity_tokens=0,
                           isolate=False, keep_going=keep_going)

    with pytest.raises(BenchError, match="exploding at 32 tokens: RuntimeError: kernel exploded"):
        run_bench(config(False, tmp_path / "a"))
    assert not (tmp_path / "a").exists()
    report = run_bench(config(True, tmp_path / "b"))
    assert [r["kernel"] for r in report["rows"]] == ["sdpa"]
    assert len(report["errors"]) == 1 and "kernel exploded" in report["errors"][0]


def test_leaky_kernel_rows_are_timed_but_not_scored(tiny_folder, tmp_path):
    """A spec whose selection sees later tokens (block_topk:pool=mean) gets no ppl / KL; the
    causal default is scored as usual."""
    from attnlab.bench.run import run_bench
    from attnlab.bench.spec import BenchConfig, parse_kernels

    config = BenchConfig(out=tmp_path, model=str(tiny_folder), lengths=(64,), corpus="kjv:ge1:1-5:32",
                         kernels=parse_kernels("block_topk:block_size=8,topk=1,block_topk:block_size=8,topk=1,pool=mean"),
                         needles=0, repeats=1, decode_steps=1, parity_tokens=32, isolate=False)
    rows = {r["kernel"]: r for r in run_bench(config)["rows"]}
    causal, leaky = rows["block_topk:block_size=8,topk=1"], rows["block_topk:block_size=8,topk=1,pool=mean"]
    assert not causal["leaky"] and causal["ppl"] > 1 and causal["kl"] >= 0 and causal["density"] < 1
    assert leaky["leaky"] and leaky["ppl"] is None and leaky["kl"] is None and leaky["ppl_change_pct"] is None
    assert leaky["prefill_s"] > 0 and leaky["parity_ok"]
