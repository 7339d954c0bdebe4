"""tune.merge: lofit / gates folded into o_proj give the attached adapter's logits, also in a
process that never imports attnlab; adapters refuse other base models; save/load round trip."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

import tiny
from attnlab import attach
from attnlab.tune import BaseModelMismatch, load, model_hash
from attnlab.tune.merge import merge, merged_model
from attnlab.tune.methods import build
from attnlab.tune.sites import all_heads, head_sites

IDS = torch.tensor([[11, 12, 13, 14, 15, 16, 17], [0, 0, 21, 22, 23, 24, 25]])
MASK = torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1]])


def _adapter(model, method: str):
    sites = head_sites(model)
    heads = all_heads(sites) if method == "gates" else [("decoder", 0, 1), ("decoder", 1, 3)]
    adapter = build(method, model, sites, heads, **({"keep_scale": True} if method == "lofit" else {}))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in adapter.module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    adapter.module.eval()
    adapter.meta["base_hash"] = model_hash(model)
    return adapter


def _attached(model, adapter):
    with torch.no_grad(), attach(model, modify=[adapter]):
        return model(input_ids=IDS, attention_mask=MASK).logits


@pytest.mark.parametrize("method", ["lofit", "gates"])
def test_merged_equals_attached(method):
    model = tiny.llama()
    adapter = _adapter(model, method)
    want = _attached(model, adapter)
    with torch.no_grad():
        got = merged_model(adapter, model)(input_ids=IDS, attention_mask=MASK).logits
        plain = model(input_ids=IDS, attention_mask=MASK).logits
    keep = MASK.bool()
    assert (got - want)[keep].abs().max() < 1e-5
    assert (plain - want)[keep].abs().max() > 1e-2  # the edit is not a no-op
    assert model.model.layers[0].self_attn.o_proj.bias is None  # the base model is untouched


def test_merged_folder_loads_without_attnlab(tmp_path):
    model = tiny.llama()
    adapter = _adapter(model, "lofit")
    want = _attached(model, adapter)
    merge(adapter, model, tmp_path / "merged")
    script = textwrap.dedent(f"""
        import sys, torch
        from transformers import AutoModelForCausalLM
        m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'merged')!r})
        with torch.no_grad():
            out = m(input_ids=torch.tensor({IDS.tolist()}), attention_mask=torch.tensor({MASK.tolist()})).logits
        assert not any(k.startswith('attnlab') for k in sys.modules), 'attnlab was imported'
        torch.save(out, {str(tmp_path / 'logits.pt')!r})
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    got = torch.load(tmp_path / "logits.pt")
    assert (got - want)[MASK.bool()].abs().max() < 1e-5


def test_merge_refuses_other_methods_and_unbiased_architectures():
    from attnlab.errors import OptionError

    model = tiny.llama()
    with pytest.raises(OptionError, match="head-output edit"):
        merged_model(build("head_lora", model, head_sites(model), [("decoder", 0, 0)]), model)
    qwen = tiny.qwen2()  # o_proj without bias and no attention_bias switch
    with pytest.raises(OptionError, match="no attention_bias switch"):
        merged_model(_adapter(qwen, "lofit"), qwen)


@pytest.mark.parametrize("method", ["lofit", "gates", "head_lora", "lora"])
def test_save_load_round_trip_and_base_check(tmp_path, method):
    model = tiny.llama()
    adapter = _adapter(model, "lofit") if method == "lofit" else build(method, model, head_sites(model),
                                                                     [("decoder", 1, 2)] if method == "head_lora"
                                                                     else all_heads(head_sites(model)))
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(0.1)
    adapter.meta["base_hash"] = model_hash(model)
    want = _attached(model, adapter)
    adapter.save(tmp_path / "a")
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"adapter.json", "adapter.safetensors"}
    again = load(tmp_path / "a", model)
    assert torch.allclose(_attached(model, again), want, atol=1e-6)
    other = tiny.llama()
    with torch.no_grad():
        other.model.layers[0].mlp.up_proj.weight.add_(1e-3)
    with pytest.raises(BaseModelMismatch, match="load it onto its own base model"):
        load(tmp_path / "a", other)
    with pytest.raises(BaseModelMismatch):
        with attach(other, modify=[adapter]):
            pass


def test_tuned_heads_grid_marks_the_chosen_heads():
    import pandas as pd

    from attnlab.tune.report import tuned_heads_section

    model = tiny.llama()
    adapter = _adapter(model, "lofit")
    adapter.meta["selection"] = {"scores": {"decoder:0:1": 0.5, "decoder:1:3": 0.25, "decoder:2:0": 0.01}}
    kinds = pd.DataFrame([{"layer": 0, "head": 1, "kind": "induction"}, {"layer": 2, "head": 0, "kind": "sink"}])
    title, body = tuned_heads_section(adapter, kinds)
    assert title == "Tuned heads" and body.count("rgba(200, 60, 30") == 2
    assert 'title="decoder:0:1, induction, |a| = 0.5000">I</td>' in body
    assert body.count("<tr>") == 1 + 3  # header + one row per layer


def test_inspect_with_adapter_draws_the_tuned_heads_in_the_report(tmp_path):
    """`attnlab inspect --adapter DIR`: report.html gets the grid; another base model or a bad folder is a clear error."""
    from typer.testing import CliRunner

    from attnlab import load as load_model
    from attnlab.cli import build_app
    from helpers import save_tiny_llama

    folder = save_tiny_llama(tmp_path / "model")
    model, _ = load_model(str(folder))
    adapter = _adapter(model, "lofit")
    adapter.meta["selection"] = {"scores": {"decoder:0:1": 0.5, "decoder:1:3": 0.25}}
    adapter.save(tmp_path / "adapter")
    runner = CliRunner()
    args = ["inspect", "--model", str(folder), "--no-probes", "--max-tokens", "32", "--format", "json"]
    result = runner.invoke(build_app(), args + ["--out", str(tmp_path / "out"), "--adapter", str(tmp_path / "adapter")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Tuned heads" in page and "lofit: 2 tuned heads" in page
    assert page.count("rgba(200, 60, 30") == 2
    doc = json.loads((tmp_path / "out" / "heads.json").read_text())
    kind = next(h["kind"] for h in doc["heads"] if (h["layer"], h["head"]) == (0, 1))
    assert f'title="decoder:0:1, {kind}, |a| = 0.5000"' in page  # lettered by this run's taxonomy
    assert "--adapter" in doc["command"]

    other = tmp_path / "other"
    save_tiny_llama(other)
    with torch.no_grad():  # same shapes, other weights
        m2, _ = load_model(str(other))
        m2.model.layers[0].mlp.up_proj.weight.add_(1e-3)
        m2.save_pretrained(other)
    result = runner.invoke(build_app(), args + ["--model", str(other), "--out", str(tmp_path / "out2"),
                                                "--adapter", str(tmp_path / "adapter")])
    assert result.exit_code != 0 and "load it onto its own base model" in result.output
    assert "Traceback" not in result.output

    result = runner.invoke(build_app(), args + ["--out", str(tmp_path / "out3"), "--adapter", str(tmp_path / "nope")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert not (tmp_path / "out3" / "heads.json").exists()  # refused before any work
