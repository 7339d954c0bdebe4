"""The linear and hybrid kernels against their slow exact references (outputs and gradients),
the chunked form against the recurrent one, decode on an attnlab StateCache against one
prefill, generate(), constant state memory, and their refusals and errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import attnlab
import tiny
from attnlab.convert.cache import StateCache
from attnlab.convert.maps import KINDS, LayerMaps, Maps, site_key
from attnlab.core.call import AttnCall, RefusedCall, Site
from attnlab.core.hooks import Hooks
from attnlab.errors import SpecError
from attnlab.kernels import KERNELS, eager
from attnlab.kernels import linear as ln

B, H, H_KV, T, D = 2, 4, 2, 29, 8
SITE = Site("decoder", "self", 0)


def _qkv(t=T, dtype=torch.float32, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(B, n, t, D, generator=g).to(dtype) for n in (H, H_KV, H_KV)]
    return [x.requires_grad_(grad) for x in xs]


def _pad_mask(causal: bool, pad: int = 5, t: int = T):
    """bool [B, 1, T, T]: causal (or full) with row 1's first `pad` keys padding."""
    mask = torch.ones(B, 1, t, t, dtype=torch.bool)
    if causal:
        mask &= torch.ones(t, t, dtype=torch.bool).tril()
    mask[1, :, :, :pad] = False
    return mask


def _maps(kind: str, window: int) -> Maps:
    """Maps with perturbed (non-identity) weights and mixing factors, so gradients mean something."""
    maps = Maps(kind, window, {site_key(SITE): (H, D)}, features=12 if kind == "performer" else None)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in maps.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return maps


def _call(q, k, v, causal=True, mask=None):
    return AttnCall(site=SITE, query=q, key=k, value=v, mask=mask, scaling=D ** -0.5, causal=causal)


def _run(name, call, maps, **kw):
    return KERNELS[name].forward(call, Hooks(), maps=maps, chunk=6, **kw).output


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("causal,pad", [(True, 0), (True, 5), (False, 0), (False, 5)])
def test_linear_chunked_equals_reference_outputs_and_grads(kind, causal, pad):
    maps = _maps(kind, 0)
    q, k, v = _qkv(grad=True)
    call = _call(q, k, v, causal, _pad_mask(causal, pad) if pad else None)
    fast, slow = _run("linear", call, maps), _run("linear", call, maps, exact=True)
    live = (call.mask.any(-1)[:, 0] if pad else torch.ones(B, T, dtype=torch.bool))  # [B, T]
    assert torch.isfinite(fast).all()
    assert float((fast - slow)[live].abs().max()) < 1e-5
    w = torch.randn_like(fast)
    params = [q, k, v] + [p for p in maps.parameters() if p.requires_grad and p.dim() > 1]
    g_fast = torch.autograd.grad((fast[live] * w[live]).sum(), params, allow_unused=True)
    g_slow = torch.autograd.grad((slow[live] * w[live]).sum(), params, allow_unused=True)
    for a, b in zip(g_fast, g_slow):
        assert a is not None and float((a - b).abs().max()) < 1e-4 * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_equals_recurrent(kind):
    """The chunked prefill and the token-by-token recurrence S_t = S_{t-1} + phi(k_t) v_t^T agree."""
    maps = _maps(kind, 0)
    q, k, v = _qkv()
    call = _call(q, k, v)
    lm = maps.of(SITE)
    kh, vh = call.kv_for_heads()
    rec = ln.recurrent(lm.q(q, call.scaling), lm.k(kh, call.scaling), vh.float()).transpose(1, 2)
    assert float((_run("linear", call, maps) - rec).abs().max()) < 1e-5


@pytest.mark.parametrize("window", [1, 4, 11])
@pytest.mark.parametrize("pad", [0, 5])
def test_hybrid_chunked_equals_reference_outputs_and_grads(window, pad):
    maps = _maps("hedgehog", window)
    q, k, v = _qkv(grad=True)
    call = _call(q, k, v, True, _pad_mask(True, pad) if pad else None)
    fast, slow = _run("hybrid", call, maps), _run("hybrid", call, maps, exact=True)
    live = call.mask.any(-1)[:, 0] if pad else torch.ones(B, T, dtype=torch.bool)
    assert float((fast - slow)[live].abs().max()) < 1e-5
    w = torch.randn_like(fast)
    params = [q, k, v] + list(maps.parameters())
    g_fast = torch.autograd.grad((fast[live] * w[live]).sum(), params)
    g_slow = torch.autograd.grad((slow[live] * w[live]).sum(), params)
    for a, b in zip(g_fast, g_slow):
        assert float((a - b).abs().max()) < 1e-4 * max(1.0, float(b.abs().max()))
    assert float(g_fast[-1].abs().sum()) > 0  # the mixing factor really gets a gradient


def test_hybrid_window_covering_everything_is_softmax():
    """With every key inside the window, gamma cancels: exactly softmax attention."""
    q, k, v = _qkv()
    call = _call(q, k, v, True, _pad_mask(True, 5))
    out = _run("hybrid", call, _maps("hedgehog", T), window=T)
    ref = eager.forward(call, Hooks()).output
    live = call.mask.any(-1)[:, 0]
    assert float((out - ref)[live].abs().max()) < 1e-5


@pytest.mark.parametrize("name,kw", [("linear", dict(feature_map="elu")), ("hybrid", dict(window=7))])
def test_bf16_close_to_fp32(name, kw):
    q, k, v = _qkv()
    out32 = KERNELS[name].forward(_call(q, k, v), Hooks(), **kw).output
    out16 = KERNELS[name].forward(_call(*(x.bfloat16() for x in (q, k, v))), Hooks(), **kw).output
    assert out16.dtype == torch.bfloat16
    assert float((out16.float() - out32).abs().max()) < 3e-2


# ----------------------------------------------------------------------------- model: decode, cache, generate

def _model_maps(model, kind, window):
    from attnlab.convert import build_maps

    maps = build_maps(model, kind, window)
    torch.manual_seed(2)
    with torch.no_grad():
        for p in maps.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return maps.requires_grad_(False)


@pytest.mark.parametrize("name,window", [("linear", 0), ("hybrid", 6)])
def test_state_cache_decode_equals_one_prefill_and_memory_is_constant(name, window):
    model = tiny.llama()
    maps = _model_maps(model, "hedgehog", window)
    ids, _ = tiny.token_batch(batch=1, length=40)
    params = dict(maps=maps, chunk=8)
    with torch.no_grad(), attnlab.attach(model, kernel=name, **params):
        whole = model(input_ids=ids).logits
        cache = StateCache(model, window)
        steps = [model(input_ids=ids[:, :20], past_key_values=cache, use_cache=True).logits]
        sizes = []
        for i in range(20, 40):
            steps.append(model(input_ids=ids[:, i:i + 1], past_key_values=cache, use_cache=True).logits)
            sizes.append(cache.memory())
    assert float((whole - torch.cat(steps, 1)).abs().max()) < 1e-4
    assert len(set(sizes)) == 1  # the state does not grow with the context
    for layer in cache.layers:  # the kept window owns its storage: no view into the prefill's keys
        for t in (layer.keys, layer.values):
            assert t.untyped_storage().nbytes() == t.numel() * t.element_size()


def test_generate_on_state_cache_equals_generate_on_stock_cache():
    model = tiny.llama()
    maps = _model_maps(model, "hedgehog", 6)
    ids, _ = tiny.token_batch(batch=1, length=16)
    gen = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    with torch.no_grad(), attnlab.attach(model, kernel="hybrid", maps=maps):
        stock = model.generate(ids, **gen)
        ours = model.generate(ids, past_key_values=StateCache(model, 6), **gen)
    assert torch.equal(stock, ours)


def test_gemma3_window_layers_stay_softmax():
    model = tiny.gemma3(window=8)
    ids, _ = tiny.token_batch(batch=1, length=24)
    with torch.no_grad():
        with attnlab.attach(model, kernel="linear") as s:
            out = model(input_ids=ids).logits
        with attnlab.attach(model, kernel="linear", sliding="refuse"), pytest.raises(RefusedCall, match="sliding"):
            model(input_ids=ids)
        with attnlab.attach(model, kernel="chunked"):
            ref = model(input_ids=ids).logits
    assert s.calls == 3 and not torch.allclose(out, ref, atol=1e-3)  # the global layer is linear


# ----------------------------------------------------------------------------- refusals and errors

@pytest.mark.parametrize("field,value,words", [
    ("softcap", 30.0, "soft-capped"), ("sinks", torch.zeros(H), "attention-sink"),
    ("bias", torch.zeros(1, 1, T, T), "biases")])
@pytest.mark.parametrize("name", ["linear", "hybrid"])
def test_refuses_score_terms(name, field, value, words):
    call = dataclasses.replace(_call(*_qkv()), **{field: value})
    with pytest.raises(RefusedCall, match=words):
        KERNELS[name].forward(call, Hooks())


def test_refuses_masks_beyond_causality_and_padding():
    mask = _pad_mask(True, 0).clone()
    mask[0, 0, 10, 3] = False  # one query hides one past key: not expressible as key padding
    with pytest.raises(RefusedCall, match="beyond causality"):
        KERNELS["linear"].forward(_call(*_qkv(), mask=mask), Hooks())


def test_hybrid_refuses_cross_and_noncausal():
    q, k, v = _qkv()
    cross = AttnCall(site=Site("decoder", "cross", 0), query=q, key=k, value=v, mask=None, scaling=1.0,
                     causal=False, q_start=0, k_start=None)
    with pytest.raises(RefusedCall, match="cross-attention"):
        KERNELS["hybrid"].forward(cross, Hooks())
    with pytest.raises(RefusedCall, match="non-causal"):
        KERNELS["hybrid"].forward(_call(q, k, v, causal=False), Hooks())
    assert torch.isfinite(KERNELS["linear"].forward(cross, Hooks()).output).all()


@pytest.mark.parametrize("params,words", [
    (dict(feature_map="cosine"), "valid feature maps: elu, relu, performer, hedgehog"),
    (dict(feature_map="hedgehog"), "learned"), (dict(chunk=0), "chunk"), (dict(sliding="drop"), "sliding")])
def test_clear_errors(params, words):
    with pytest.raises(SpecError, match=words):
        KERNELS["linear"].forward(_call(*_qkv()), Hooks(), **params)


def test_state_cache_used_by_another_kernel_is_an_error():
    model = tiny.llama()
    ids, _ = tiny.token_batch(batch=1, length=12)
    cache = StateCache(model, 0)
    with torch.no_grad():
        with attnlab.attach(model, kernel="sdpa"):  # fills the window buffer, never the state
            model(input_ids=ids[:, :8], past_key_values=cache, use_cache=True)
        with attnlab.attach(model, kernel="linear"), pytest.raises(RuntimeError, match="other than linear"):
            model(input_ids=ids[:, 8:9], past_key_values=cache, use_cache=True)
