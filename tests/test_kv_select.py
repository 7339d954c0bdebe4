"""kv selection rules (quest, tokenselect, recycled), spec errors, every decoder of the
architecture matrix, sliding-window layers left alone, attnlab prefill kernels, the CLI."""

from __future__ import annotations

import pytest
import torch

import attnlab
from archs import ARCHS
from attnlab.errors import SpecError
from attnlab.kv import parse

T = 48


def _prompt(n=T, seed=7):
    return torch.randint(3, 128, (1, n), generator=torch.Generator().manual_seed(seed))


def _generate(model, ids, n=6, **attach):
    with torch.no_grad(), attnlab.attach(model, **attach) as s:
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             min_new_tokens=n, do_sample=False, output_scores=True,
                             return_dict_in_generate=True, pad_token_id=0)
    return out, s


@pytest.mark.parametrize("spec", ["quest:page=8,tokens=64", "tokenselect:tokens=64", "recycled:tokens=64,every=3",
                                  "recycled:tokens=8,every=1"])
def test_selection_with_room_for_everything_is_exact(spec):
    model, ids = ARCHS["llama"].build(), _prompt()
    ref, _ = _generate(model, ids)
    out, s = _generate(model, ids, kv=spec)
    assert torch.equal(ref.sequences, out.sequences)
    for a, b in zip(ref.scores, out.scores):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)


class _Grab:
    def __init__(self):
        self.calls, self.outputs = [], []

    def on_call(self, call):
        if call.phase == "decode" and call.layer == 1:
            self.calls.append(call)

    def on_output(self, call, output):
        if call.phase == "decode" and call.layer == 1:
            self.outputs.append(output)


def _attend(call, keys_idx):
    """Eager attention of the decode query on the listed key slots of each key head: [H, Dv]."""
    out = []
    for h in range(call.num_heads):
        idx = keys_idx[h // call.groups]
        k, v = call.key[0, h // call.groups, idx], call.value[0, h // call.groups, idx]
        out.append(torch.softmax(call.query[0, h, -1] @ k.T * call.scaling, -1) @ v)
    return torch.stack(out)


def test_quest_attends_exactly_its_top_bound_pages():
    model, ids, grab = ARCHS["llama"].build(), _prompt(), _Grab()
    page, budget = 8, 16
    _generate(model, ids, n=4, kv=f"quest:page={page},tokens={budget}", observe=[grab])
    call, output = grab.calls[-1], grab.outputs[-1]
    full = (call.k_len - 1) // page
    keys = call.key[0, :, :full * page].view(call.num_kv_heads, full, page, -1)
    kmin, kmax = keys.amin(2), keys.amax(2)  # [H_kv, P, D]
    chosen = []
    for kh in range(call.num_kv_heads):
        qs = call.query[0, kh * call.groups:(kh + 1) * call.groups, -1]  # [G, D]
        bound = torch.stack([torch.maximum(q * kmax[kh], q * kmin[kh]).sum(-1) for q in qs]).amax(0)  # [P]
        pages = bound.topk(budget // page).indices.sort().values
        idx = torch.cat([torch.arange(p * page, (p + 1) * page) for p in pages] +
                        [torch.arange(full * page, call.k_len)])
        chosen.append(idx)
    assert torch.allclose(output[0, -1], _attend(call, chosen), atol=1e-5)
    assert not torch.allclose(output[0, -1], _attend(call, [torch.arange(call.k_len)] * 2), atol=1e-4)


def test_recycled_reuses_the_top_keys_of_its_last_full_step():
    model, ids, grab = ARCHS["llama"].build(), _prompt(), _Grab()
    budget = 12
    _generate(model, ids, n=3, kv=f"recycled:tokens={budget},every=4", observe=[grab])
    full, reuse = grab.calls[0], grab.calls[1]  # decode steps 0 (full attention) and 1 (recycled)
    assert torch.allclose(grab.outputs[0][0, -1], _attend(full, [torch.arange(full.k_len)] * 2), atol=1e-5)
    p = torch.softmax(full.query[0, :, -1:] @ full.key[0].repeat_interleave(2, 0).transpose(-1, -2) * full.scaling, -1)
    top = p[:, 0].view(2, 2, -1).mean(1).topk(budget, -1).indices.sort(-1).values  # [H_kv, budget]
    chosen = [torch.cat([top[h], torch.tensor([full.k_len])]) for h in range(2)]
    assert torch.allclose(grab.outputs[1][0, -1], _attend(reuse, chosen), atol=1e-5)


@pytest.mark.parametrize("spec,words", [
    ("nope:ratio=0.5", "valid policies"), ("snapkv:ratio=0.5,budget=4", "not both"), ("snapkv:ratio=1.5", "[0, 1)"),
    ("snapkv", "needs ratio"), ("snapkv:ratio=0.5,windw=4", "no parameter"), ("quest:tokens=1.5", "is not int"),
    ("none:foo=1", "takes no parameter"), ("snapkv:ratio=0.5,window=x", "is not int"),
    ("quest:ratio=0.5", "evicts nothing"), ("none:decode_budget=8", "takes no parameter"),
    ("quest:page=4,tokens=8,layer=1", "no parameter"), ("tova:ratio=0.5,heads=some", "valid: group, all")])
def test_spec_errors_are_clear(spec, words):
    with pytest.raises(SpecError, match=words.replace("[", r"\[").replace(")", r"\)")):
        parse(spec)


DECODERS = sorted(n for n, a in ARCHS.items() if a.kind == "decoder")


@pytest.mark.parametrize("name", DECODERS)
def test_every_decoder_generates_and_full_budget_is_exact(name):
    arch = ARCHS[name]
    model = arch.build()
    ids = arch.inputs(batch=1, pad=False)["input_ids"]
    ref, _ = _generate(model, ids, n=3)
    same, _ = _generate(model, ids, n=3, kv=f"snapkv:budget={ids.shape[1]},window=4")
    half, s = _generate(model, ids, n=3, kv="snapkv:ratio=0.5,window=4")
    assert torch.equal(ref.sequences, same.sequences), name
    layers = s.kv.layers()
    cfg = model.config.get_text_config()
    types = getattr(cfg, "layer_types", None) or ["full_attention"] * cfg.num_hidden_layers
    sliding = getattr(cfg, "sliding_window", None) is not None and name in ("mistral", "starcoder2")
    for i, kind in enumerate(types):
        if name == "deepseek_v3":  # MLA: the cache holds shared latents, not per-head keys
            assert "left alone" in s.kv.skipped[i] and not layers[i].compressed
        elif kind == "sliding_attention" or sliding:
            assert i not in layers and "already bounded" in s.kv.skipped[i], (name, i, s.kv.skipped)
        else:
            assert layers[i].visible_counts().max() == ids.shape[1] // 2 + 2, (name, i)


@pytest.mark.parametrize("kernel", ["block_topk", "streaming"])
def test_attnlab_prefill_kernels_feed_the_compressed_cache(kernel):
    model, ids = ARCHS["llama"].build(), _prompt()
    ref, _ = _generate(model, ids, kernel=kernel)
    out, s = _generate(model, ids, kernel=kernel, kv=f"h2o:budget={T}")
    assert torch.equal(ref.sequences, out.sequences)
    half, s = _generate(model, ids, kernel=kernel, kv="h2o:ratio=0.5")
    assert s.kv_bytes["total"] < 0.6 * 2 * (T + 6) * 2 * 2 * 16 * 4


def test_generate_cli_prints_text_bytes_and_speed(tmp_path):
    import json

    from typer.testing import CliRunner

    from attnlab.cli import build_app
    from helpers import save_tiny_llama

    folder = save_tiny_llama(tmp_path / "tiny")
    prompt = tmp_path / "p.txt"
    prompt.write_text("The quick brown fox jumps over the lazy dog. " * 6)
    app = build_app()
    r = CliRunner().invoke(app, ["generate", "--prompt-file", str(prompt), "--model", str(folder), "--kv",
                                 "snapkv:ratio=0.5,window=8", "--max-new-tokens", "4", "--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["new_tokens"] == 4 and 0 < data["kv_bytes"] < 0.7 * data["kv_bytes_full"]
    bad = CliRunner().invoke(app, ["generate", "--prompt-file", str(prompt), "--model", str(folder),
                                   "--kv", "snapkv:ratio=2"])
    assert bad.exit_code == 2 and "ratio must be in" in bad.output
