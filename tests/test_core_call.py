"""The call model: sites (stack, role, layer), positions from the cache, score terms, errors."""

from __future__ import annotations

import pytest
import torch

import archs
import attnlab
import tiny
from attnlab.core import dispatch, sites
from attnlab.core.call import AttnCall, RefusedCall, Site


class Record:
    """Observer keeping (site, q_start, k_start, q_len, k_len) of every call."""

    def __init__(self):
        self.calls = []

    def on_call(self, call):
        self.calls.append((call.site, call.q_start, call.k_start, call.q_len, call.k_len))


def _sites(name: str) -> list[str]:
    arch = archs.ARCHS[name]
    model, rec = arch.build(), Record()
    with attnlab.attach(model, observe=[rec]), torch.no_grad():
        model(**arch.inputs())
    return [str(c[0]) for c in rec.calls]


@pytest.mark.parametrize("name, expected", [
    ("bart", ["encoder:0", "encoder:1", "decoder:0", "decoder.cross:0", "decoder:1", "decoder.cross:1"]),
    ("t5", ["encoder:0", "encoder:1", "decoder:0", "decoder.cross:0", "decoder:1", "decoder.cross:1"]),
    ("whisper", ["encoder:0", "encoder:1", "decoder:0", "decoder.cross:0", "decoder:1", "decoder.cross:1"]),
    ("gpt2", ["decoder:0", "decoder:1"]),
    ("bert", ["encoder:0", "encoder:1"]),
])
def test_every_call_has_its_own_site(name, expected):
    assert _sites(name) == expected


def test_two_towers_are_two_stacks():
    got = _sites("clip")
    assert {s.split(":")[0] for s in got} == {"text", "vision"}
    assert len(got) == len(set(got))  # no two calls share a site


def test_cross_attention_keys_have_no_positions():
    arch = archs.ARCHS["bart"]
    model, rec = arch.build(), Record()
    with attnlab.attach(model, observe=[rec]), torch.no_grad():
        model(**arch.inputs())
    cross = [c for c in rec.calls if c[0].role == "cross"]
    assert cross and all(k_start is None for _, _, k_start, _, _ in cross)
    call = AttnCall(site=Site("decoder", "cross", 0), query=torch.zeros(1, 2, 3, 4), key=torch.zeros(1, 2, 5, 4),
                    value=torch.zeros(1, 2, 5, 4), mask=None, scaling=1.0, causal=False, k_start=None)
    with pytest.raises(ValueError, match="no positions"):
        call.q_offset
    assert call.visible().all()


def test_positions_come_from_the_cache_static_and_sliding():
    """A static cache has more key slots than tokens: query 0 of the prefill sits at key 0,
    not at K - Q; a sliding-window cache holds only the last keys (k_start > 0)."""
    ids, mask = tiny.token_batch(batch=2, length=12, pad_left=3)
    for arch, layer in (("llama", 0), ("gemma3", 0)):
        model, rec = getattr(tiny, arch)(), Record()
        kw = dict(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0,
                  cache_implementation="static")
        with torch.no_grad():
            ref = model.generate(**kw)
            with attnlab.attach(model, kernel="eager", observe=[rec]):
                out = model.generate(**kw)
        assert torch.equal(ref, out)
        first = [c for c in rec.calls if c[0].layer == layer]
        site, q_start, k_start, q_len, k_len = first[0]
        assert (q_start, q_len) == (0, 12)
        assert k_start == 0 and q_start - k_start == 0  # K - Q would say 4 on llama's 16 slots
        _, q_start, k_start, q_len, k_len = first[1]
        assert q_start == 12 and q_len == 1
        if arch == "llama":  # static slots 0..K-1 at their own positions, the new token among them
            assert k_start == 0 and k_len > 13
        if arch == "gemma3":  # window 8: the sliding layer keeps 8 keys, positions 5..12
            assert (k_start, k_len) == (5, 8)


def test_an_unknown_tensor_argument_is_an_error_naming_it():
    module = torch.nn.Linear(1, 1)
    with pytest.raises(dispatch.UnsupportedCallError, match="alibi_slopes.*Linear|Linear.*alibi_slopes"):
        dispatch.score_terms(module, {"alibi_slopes": torch.ones(4), "use_cache": True})
    kwargs = {"position_ids": torch.arange(3)[None], "use_cache": True, "s_aux": torch.zeros(2)}
    terms = dispatch.score_terms(module, kwargs)
    assert terms["sinks"] is not None and kwargs == {"use_cache": True}


@pytest.mark.parametrize("name", ["bloom", "mpt", "falcon"])
def test_models_outside_attention_interface_get_a_clear_error(name):
    if name not in archs.UNROUTABLE:
        pytest.skip(f"{name} is not in this transformers version")
    model = archs.UNROUTABLE[name].build()
    with pytest.raises(attnlab.UnsupportedModelError, match="AttentionInterface"):
        with attnlab.attach(model):
            pass


@pytest.mark.parametrize("kernel", ["block_topk", "streaming", "flexprefill", "window"])
def test_sparse_kernels_refuse_position_biases_and_sinks(kernel):
    for name in ("t5", "gpt_oss"):
        arch = archs.ARCHS[name]
        model = arch.build()
        with pytest.raises(RefusedCall, match=kernel):
            with attnlab.attach(model, kernel=kernel), torch.no_grad():
                model(**arch.inputs())


def test_stack_names_from_paths():
    assert sites.split_name("model.encoder.layers.3.self_attn") == ("model.encoder.layers", 3)
    assert sites.split_name("decoder.block.2.layer.1.EncDecAttention") == ("decoder.block", 2)
    assert sites.stack_word("model.vision_tower.vision_model.encoder.layers") == "vision"
    assert sites.stack_word("model.language_model.layers") == "text"
    assert sites.stack_word("model.layers") is None
    assert sites.is_cross_module("bert.encoder.layer.0.crossattention.self", torch.nn.Module())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: GPU parity not run")
@pytest.mark.parametrize("kernel", ["sdpa", "eager", "chunked", "stats", "block_topk", "streaming"])
def test_cuda_parity(kernel):
    model = tiny.llama().cuda()
    ids, mask = tiny.token_batch(batch=2, length=40, pad_left=5)
    ids, mask = ids.cuda(), mask.cuda()
    params = {"topk": 64} if kernel == "block_topk" else {"window": 64} if kernel == "streaming" else {}
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
        with attnlab.attach(model, kernel=kernel, **params):
            out = model(input_ids=ids, attention_mask=mask).logits
    assert float((ref - out).abs()[mask.bool()].max()) < 1e-4


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("causal, window", [(True, None), (True, 3), (False, None), (False, 2)])
def test_visible_at_equals_visible(masked, causal, window):
    from attnlab.core.scores import visible, visible_at

    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(2, 1, 5, 9, generator=g) > 0.3) if masked else None
    call = AttnCall(site=Site("decoder", "self", 0), query=torch.zeros(2, 2, 5, 4), key=torch.zeros(2, 2, 9, 4),
                    value=torch.zeros(2, 2, 9, 4), mask=mask, scaling=1.0, causal=causal, sliding_window=window)
    got = visible_at(call, torch.arange(2)[:, None, None], torch.arange(5)[None, :, None], torch.arange(9)[None, None, :])
    assert torch.equal(got, visible(call).expand(2, 1, 5, 9)[:, 0])


@pytest.mark.parametrize("kernel, params", [("streaming", dict(window=64, block_size=4)),
                                            ("block_topk", dict(topk=64, block_size=4)),
                                            ("window", dict(window=64, block_size=4))])
def test_sparse_kernels_apply_a_symmetric_window_without_a_mask(kernel, params):
    """A non-causal windowed call (ModernBERT-style local layer) that arrives without a mask:
    the sparse executor reads the same visibility as every other kernel (|i - j| < w)."""
    from attnlab.core.hooks import Hooks
    from attnlab.kernels import KERNELS

    g = torch.Generator().manual_seed(1)
    call = AttnCall(site=Site("encoder", "self", 0), query=torch.randn(1, 2, 12, 8, generator=g),
                    key=torch.randn(1, 2, 12, 8, generator=g), value=torch.randn(1, 2, 12, 8, generator=g),
                    mask=None, scaling=8 ** -0.5, causal=False, sliding_window=3)
    ref = KERNELS["eager"].forward(call, Hooks()).output
    out = KERNELS[kernel].forward(call, Hooks(), **params).output
    assert float((ref - out).abs().max()) < 1e-5
