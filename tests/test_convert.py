"""Attention transfer (teacher in the same forward, only the maps train, the loss falls,
resumable checkpoints), save / load (hash refusals), the maps as a spec string, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

import attnlab
import tiny
from attnlab.convert import build_maps, evaluate, load, save, transfer
from attnlab.errors import OptionError, SpecError

SEQ = 24


def _data(n=6, seed=0):
    return torch.randint(3, tiny.VOCAB, (n, SEQ), generator=torch.Generator().manual_seed(seed))


def _transfer(model, **kw):
    opts = dict(feature_map="hedgehog", window=4, data=_data(), progress=False, lr=3e-2, warmup=1)
    opts.update(kw)
    return transfer(model, None, **opts)


def test_teacher_mode_returns_exact_softmax_and_records_every_layer():
    model = tiny.llama()
    maps = build_maps(model, "hedgehog", 4)
    ids = _data(1)
    with torch.no_grad():
        with attnlab.attach(model, kernel="sdpa"):
            ref = model(input_ids=ids).logits
        with attnlab.attach(model, kernel="hybrid", maps=maps, teacher=True):
            got = model(input_ids=ids).logits
    assert torch.allclose(got, ref, atol=1e-5)
    assert sorted(maps.losses) == [f"decoder_self_{i}" for i in range(3)]
    assert all(float(v) > 0 for v in maps.losses.values())


def test_transfer_trains_only_the_maps_and_lowers_the_loss():
    model = tiny.llama()
    before = {n: p.clone() for n, p in model.state_dict().items()}
    maps = _transfer(model, data=_data(12))
    hist = maps.meta["history"]
    assert len(hist) == 12 and hist[-1]["loss"] < 0.8 * hist[0]["loss"]
    assert set(hist[0]["layers"]) == {f"decoder_self_{i}" for i in range(3)}
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())  # restored
    lm = maps.layers["decoder_self_0"]
    assert not torch.allclose(lm.q.weight, torch.eye(lm.q.head_dim).expand_as(lm.q.weight))
    assert maps.meta["trainable_params"] == sum(p.numel() for p in maps.parameters())


def test_transfer_resumes_from_its_checkpoint(tmp_path):
    full = _transfer(tiny.llama(), checkpoint_every=2)

    class Stop(Exception):
        pass

    def stop_at_4(step, tokens, maps):
        if step == 4:
            raise Stop

    with pytest.raises(Stop):
        _transfer(tiny.llama(), out=tmp_path, checkpoint_every=2, callback=stop_at_4)
    resumed = _transfer(tiny.llama(), out=tmp_path, checkpoint_every=2)
    assert [h["step"] for h in resumed.meta["history"]] == list(range(1, 7))
    for (n, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), n


def test_save_load_round_trip_and_refusals(tmp_path):
    model = tiny.llama()
    maps = _transfer(model, data=_data(2))
    save(maps, tmp_path / "m", model, results={"ppl": 1.0})
    meta = json.loads((tmp_path / "m" / "convert_config.json").read_text())
    assert meta["base_model_hash"] and meta["data"]["train_sha256"] and meta["recipe"]["window"] == 4
    assert set(meta["modules"]) == set(maps.layers)
    ids = _data(2, seed=3)
    again = load(tmp_path / "m", model=model)
    assert evaluate(model, ids, "hybrid", maps=maps) == evaluate(model, ids, "hybrid", maps=again)
    assert evaluate(model, ids, "hybrid", maps=str(tmp_path / "m")) == evaluate(model, ids, "hybrid", maps=maps)
    other = tiny.llama(rms_norm_eps=1e-5 + 1e-9)
    torch.manual_seed(9)
    other.model.layers[0].self_attn.q_proj.weight.data.add_(1e-3)
    with pytest.raises(SpecError, match="another model"):
        load(tmp_path / "m", model=other)
    with pytest.raises(SpecError, match="another model"):
        evaluate(other, ids, "hybrid", maps=load(tmp_path / "m"))
    with pytest.raises(Exception, match="no converted feature maps"):
        load(tmp_path)


def test_linear_maps_without_parameters_are_not_trained():
    maps = _transfer(tiny.llama(), feature_map="elu", window=0, data=_data(2))
    assert maps.meta["history"] == [] and maps.meta["trainable_params"] == 0


def test_bad_options():
    from attnlab.convert.run import check_options

    with pytest.raises(SpecError, match="valid feature maps"):
        check_options("cosine", 64, 1024, 256, 0)
    with pytest.raises(OptionError, match="--window"):
        check_options("elu", -1, 1024, 256, 0)
    with pytest.raises(OptionError, match="seq-len"):
        check_options("elu", 0, 100, 256, 0)
    with pytest.raises(OptionError, match="token ids"):
        transfer(tiny.llama(), None, data=torch.zeros(5, dtype=torch.long), progress=False)


def test_cli_convert_bad_option_exits_2_before_work(tmp_path):
    from typer.testing import CliRunner

    from attnlab.cli import build_app

    res = CliRunner().invoke(build_app(), ["convert", "--out", str(tmp_path), "--feature-map", "cosine"])
    assert res.exit_code == 2 and "valid feature maps" in res.output
    assert not any(tmp_path.iterdir())


def test_bench_measures_saved_maps_as_a_kernel_spec(tmp_path):
    """`attnlab bench --kernels "hybrid:maps=DIR"`: the maps load in the worker process, the
    full-budget parity gate (window covering everything = softmax) passes, ppl is measured."""
    from helpers import save_tiny_llama

    from attnlab.bench.run import run_bench
    from attnlab.bench.spec import BenchConfig, parse_kernels

    folder = save_tiny_llama(tmp_path / "tiny")
    model, _ = attnlab.load(str(folder))
    maps = transfer(model, None, "hedgehog", 8, data=torch.randint(3, 1000, (2, 32)), progress=False)
    save(maps, tmp_path / "maps", model)
    config = BenchConfig(out=tmp_path / "out", model=str(folder), kernels=parse_kernels(f"hybrid:maps={tmp_path}/maps"),
                         lengths=(64,), corpus="kjv:ge1:1-2:25", needles=0, repeats=1, decode_steps=1, threads=1,
                         isolate=False)
    report = run_bench(config)
    (row,) = [r for r in report["rows"] if r["kernel"] != "sdpa"]
    assert row["kernel"].startswith("hybrid") and row["ppl"] > 1, row


def test_lora_stage_lowers_the_next_token_loss_and_merges():
    from attnlab.convert import lora_stage

    model = tiny.llama()
    maps = _transfer(model, data=_data(2))
    ids = _data(8, seed=4)
    before = evaluate(model, ids[:2], "hybrid", maps=maps)
    merged = lora_stage(model, None, maps, data=ids.repeat(3, 1), lr=3e-2, progress=False)
    hist = maps.meta["lora"]["history"]
    assert type(merged).__name__ == "LlamaForCausalLM" and not any("lora" in n for n, _ in merged.named_parameters())
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert evaluate(merged, ids[:2], "hybrid", maps=maps) < before  # the maps accept the merged weights
