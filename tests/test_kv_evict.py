"""kv eviction: budget = full is exact; each policy keeps exactly what its naive reference picks;
decode on a compressed cache equals eager attention on the kept tokens; batches with padding."""

from __future__ import annotations

import pytest
import torch

import attnlab
from archs import ARCHS

T = 40  # prompt tokens


def _model():
    return ARCHS["llama"].build()  # 2 layers, 4 query heads on 2 key heads (GQA), rope


def _prompt(n=T, seed=5, batch=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 128, (batch, n), generator=g)


def _generate(model, ids, mask=None, n=6, **attach):
    mask = torch.ones_like(ids) if mask is None else mask
    with torch.no_grad(), attnlab.attach(model, **attach) as s:
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             output_scores=True, return_dict_in_generate=True, pad_token_id=0)
    return out, s


@pytest.mark.parametrize("policy,kernel", [(p, "sdpa") for p in ("streaming", "h2o", "tova", "knorm", "random",
                                                                 "adaptive")] + [("snapkv", k) for k in
                                                                                 ("sdpa", "eager", "chunked")])
def test_budget_full_is_exact(policy, kernel):
    model, ids = _model(), _prompt()
    ref, _ = _generate(model, ids, kernel=kernel)
    out, s = _generate(model, ids, kernel=kernel, kv=f"{policy}:budget={T}")
    assert torch.equal(ref.sequences, out.sequences)
    for a, b in zip(ref.scores, out.scores):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)
    assert s.kv.layers()[0].compressed


def _full_attention(model, ids):
    """Per layer: eager attention maps [1, H, T, T] and the keys [1, H_kv, T, D] of a plain forward."""
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True, use_cache=True)
    model.set_attn_implementation("sdpa")
    return out.attentions, [layer.keys for layer in out.cache.layers]


def _group(x, h_kv=2):
    return x.view(x.shape[0], h_kv, -1, x.shape[-1]).mean(2)


def _reference_scores(name, attn, keys, t, params=""):
    """Naive scores [1, H_kv, T] from the full attention map and keys."""
    if name == "snapkv":
        w = 8
        s = torch.nn.functional.avg_pool1d(attn[:, :, -w:].mean(2), 5, 1, 2, count_include_pad=True)
        s = _group(s)
        s[..., -w:] = float("inf")
        return s
    if name == "h2o":
        return _group(attn.sum(2) / torch.arange(t, 0, -1).float())
    if name == "tova":
        if "heads=all" in params:  # kvpress's TOVAPress: mean over every query head
            return attn[:, :, -1].mean(1, keepdim=True).expand(1, 2, t).clone()
        return _group(attn[:, :, -1])
    if name == "knorm":
        return -keys.norm(dim=-1)
    if name == "streaming":
        s = torch.arange(t).float().expand(1, 2, t).clone()
        s[..., :4] = float("inf")
        return s


@pytest.mark.parametrize("name,params", [("snapkv", "window=8"), ("h2o", ""), ("tova", ""), ("tova", "heads=all"),
                                         ("knorm", ""), ("streaming", "sinks=4")])
def test_keeps_what_the_reference_picks(name, params):
    model, ids = _model(), _prompt()
    attns, keys = _full_attention(model, ids)
    budget, keep_last = 13, 3
    spec = f"{name}:budget={budget},keep_last={keep_last}" + (f",{params}" if params else "")
    _, s = _generate(model, ids, n=1, kv=spec)
    for i, layer in s.kv.layers().items():
        ref = _reference_scores(name, attns[i].float(), keys[i].float(), T, params)
        ref[..., -keep_last:] = float("inf")
        want = ref.topk(budget, dim=-1).indices.sort(-1).values  # [1, H_kv, budget]
        got = layer.pos[..., :budget]
        assert layer.keep.all() and layer.keep.shape[-1] == budget  # prefill only: no decoded token yet
        assert torch.equal(got, want), (i, got, want)


@pytest.mark.parametrize("spec", ["snapkv:ratio=0.6,window=4", "adaptive:policy=snapkv,ratio=0.6,window=4"])
def test_decode_equals_eager_on_the_kept_tokens(spec):
    model, ids = _model(), _prompt()

    class Grab:
        def __init__(self):
            self.calls, self.outputs = {}, {}

        def on_call(self, call):
            if call.phase == "decode":
                self.calls[call.layer] = call  # the last decode step of each layer

        def on_output(self, call, output):
            if call.phase == "decode":
                self.outputs[call.layer] = output

    grab = Grab()
    _generate(model, ids, n=3, kv=spec, observe=[grab], kernel="sdpa")
    padded = False
    for layer, call in grab.calls.items():
        output = grab.outputs[layer]
        keep = call.mask[0, ::2, 0]  # [H_kv, K]: per key head (the mask repeats over the group)
        for h in range(call.num_heads):
            kh = h // call.groups
            k, v = call.key[0, kh][keep[kh]], call.value[0, kh][keep[kh]]  # kept tokens only
            p = torch.softmax((call.query[0, h, -1] @ k.T) * call.scaling, -1)
            assert torch.allclose(output[0, -1, h], p @ v, atol=1e-5)
        assert call.k_len < T + 2  # the cache is physically shorter than the sequence
        assert int(keep.sum()) == 2 * (16 + 2)  # 16 prompt tokens per head on average + 2 decoded
        padded |= bool((~keep).any())
    assert padded == spec.startswith("adaptive")  # uneven heads leave padded slots


@pytest.mark.parametrize("spec", ["snapkv:ratio=0.5,window=4", "adaptive:policy=h2o,ratio=0.5", "random:ratio=0.5",
                                  "streaming:ratio=0.75,keep_last=2"])
def test_padded_rows_equal_their_prompt_alone(spec):
    model = _model()
    lengths = [T, T - 7, T - 13, T - 2]
    rows = [_prompt(n, seed=10 + i) for i, n in enumerate(lengths)]
    ids = torch.zeros(4, T, dtype=torch.long)
    mask = torch.zeros(4, T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, T - r.shape[1]:], mask[i, T - r.shape[1]:] = r[0], 1
    batch, sb = _generate(model, ids, mask, n=5, kv=spec)
    for i, r in enumerate(rows):
        alone, sa = _generate(model, r, n=5, kv=spec)
        assert torch.equal(batch.sequences[i, -5:], alone.sequences[0, -5:]), i
        for li, layer in sa.kv.layers().items():
            lb = sb.kv.layers()[li]
            for h in range(2):
                got = lb.pos[i, h][lb.keep[i, h]]
                assert torch.equal(got, layer.pos[0, h][layer.keep[0, h]]), (i, li, h)


def test_cache_really_shrinks_and_bytes_are_reported():
    model, ids = _model(), _prompt()
    _, full = _generate(model, ids, n=1, kv="none")
    _, half = _generate(model, ids, n=1, kv="knorm:ratio=0.5")
    _, adap = _generate(model, ids, n=1, kv="adaptive:policy=snapkv,ratio=0.75,window=4")
    per_token = 2 * 2 * 16 * 4  # k + v, 2 key heads, head dim 16, fp32 (one generated token: prefill only)
    assert full.kv_bytes["total"] == 2 * T * per_token
    assert half.kv_bytes["total"] == 2 * (T // 2) * per_token
    for layer in half.kv.layers().values():
        assert layer.keys.shape == (1, 2, T // 2, 16) and layer.keys.is_contiguous()
    tokens = [t for info in adap.kv_bytes["layers"].values() for t in info["tokens"][0]]
    assert sum(tokens) == 2 * 2 * (T // 4)  # one global budget per layer ...
    assert len(set(tokens)) > 1  # ... that heads share unevenly
    assert all(t >= int(0.2 * (T // 4)) for t in tokens)
    held = adap.kv_bytes["layers"][0]
    assert held["held"] == max(held["tokens"][0]) * per_token  # padded to its longest head


def test_decode_budget_holds():
    model, ids = _model(), _prompt()
    for name in ("h2o", "streaming", "tova"):
        out, s = _generate(model, ids, n=20, kv=f"{name}:budget=16,decode_budget=16,decode_every=4")
        for layer in s.kv.layers().values():
            counts = layer.visible_counts()
            assert int(counts.max()) < 16 + 4 and int(counts.min()) >= 16
            assert layer.seen == T + 19
            assert int(layer.pos.max()) == T + 18  # the newest token is always kept
        assert out.sequences.shape[1] == T + 20
