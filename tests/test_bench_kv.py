"""`attnlab bench --kv`: compressed decoding rows against the uncompressed baseline."""

import json

import pytest
from typer.testing import CliRunner

from attnlab.cli import build_app


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from helpers import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tinyllama_kv"))


def test_split_kv_keeps_each_policys_parameters_together():
    from attnlab.bench.spec import split_kv

    assert split_kv("none,streaming:ratio=0.5,snapkv:ratio=0.5,keep_last=8,adaptive:policy=snapkv,ratio=0.5") == (
        "none", "streaming:ratio=0.5", "snapkv:ratio=0.5,keep_last=8", "adaptive:policy=snapkv,ratio=0.5")


def test_bench_kv_rows_bytes_agreement_and_needles(tiny_folder, tmp_path):
    out = tmp_path / "out"
    args = ["bench", "--model", str(tiny_folder), "--kernels", "sdpa", "--lengths", "128", "--repeats", "1",
            "--decode-steps", "1", "--needles", "2", "--needle-lengths", "96", "--corpus", "kjv:ge1:1-5:32",
            "--kv", "streaming:ratio=0.5,snapkv:budget=1000,knorm:ratio=0.75", "--kv-new-tokens", "6",
            "--out", str(out), "--format", "json", "--no-isolate"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {r["kv"]: r for r in report["kv_rows"]}
    assert list(rows) == ["none", "streaming:ratio=0.5", "snapkv:budget=1000", "knorm:ratio=0.75"]
    layers, kv_heads, dim = 3, 2, 16  # tiny.llama: 3 layers, 2 KV heads of 16 dims, fp32 keys + values
    per_token = layers * kv_heads * dim * 4 * 2
    none = rows["none"]
    assert none["cache_mb"] * 2 ** 20 == per_token * (128 + 6 - 1)  # every prompt token + the decoded ones
    assert rows["streaming:ratio=0.5"]["cache_mb"] * 2 ** 20 == per_token * (64 + 6 - 1)
    assert rows["knorm:ratio=0.75"]["cache_mb"] * 2 ** 20 == per_token * (32 + 6 - 1)
    full = rows["snapkv:budget=1000"]  # a budget above the prompt keeps everything: the same tokens
    assert full["agreement"] == 1.0 and full["cache_ratio"] == 1.0 and full["tokens"] == none["tokens"]
    for r in rows.values():
        assert r["decode_tok_s"] > 0 and r["prefill_s"] > 0 and r["peak_rss_decode_mb"] > 0
        assert 0.0 <= r["agreement"] <= 1.0 and r["needle_acc"] is not None
    assert report["kv_needles"]["none"]["n"] == 2 and report["kv_needles"]["none"]["delta_pts"] == 0
    assert (out / "kv.csv").read_text().count("\n") == 5
    table = CliRunner().invoke(build_app(), args[:-5] + ["--out", str(tmp_path / "t"), "--no-isolate"])
    assert table.exit_code == 0 and "compressed decoding" in table.output


@pytest.mark.parametrize("spec, message", [("snapkv:ratio=abc", "must be a number"),
                                           ("nope", "does not start with a policy name"),
                                           ("snapkv:ratio=0.5", "--kv-new-tokens must be >= 3")])
def test_bench_kv_bad_spec_fails_before_any_work(tiny_folder, tmp_path, spec, message):
    extra = ["--kv-new-tokens", "2"] if "new-tokens" in message else []
    result = CliRunner().invoke(build_app(), ["bench", "--model", str(tiny_folder), "--out", str(tmp_path / "o"),
                                              "--corpus", "kjv:ge1:1-2:25", "--needles", "0", "--kv", spec] + extra)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()
