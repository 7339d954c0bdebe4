"""Parity of attach(kernel=sdpa|eager) with the stock model, per layer and at the output."""

import pytest
import torch

import attnlab
import tiny
from helpers import CountCalls, layer_diffs

TOL = {"sdpa": 1e-5, "eager": 1e-4}
DECODERS = ["llama", "qwen2", "gpt2", "gemma3"]


def _run(model, ids, mask, kernel=None, **kw):
    with torch.no_grad():
        if kernel is None:
            return model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        with attnlab.attach(model, kernel=kernel, **kw):
            return model(input_ids=ids, attention_mask=mask, output_hidden_states=True)


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", DECODERS)
@pytest.mark.parametrize("pad_left", [0, 5])
def test_decoder_parity(arch, kernel, pad_left):
    model = getattr(tiny, arch)()
    ids, mask = tiny.token_batch(batch=2, length=24, pad_left=pad_left)
    ref = _run(model, ids, mask)
    out = _run(model, ids, mask, kernel)
    diffs = layer_diffs(ref, out, keep=mask)
    assert len(diffs) == model.config.num_hidden_layers + 2
    assert max(diffs) < TOL[kernel], diffs
    assert model.config._attn_implementation == "sdpa"


def test_gemma3_window_is_applied():
    """The mask function must be registered: without it the sliding window silently vanishes."""
    model = tiny.gemma3(window=4)
    ids, mask = tiny.token_batch(batch=1, length=32)
    full = tiny.gemma3(window=64)
    full.load_state_dict(model.state_dict())
    windowed, unwindowed = _run(model, ids, mask, "eager"), _run(full, ids, mask, "eager")
    assert (windowed.logits - unwindowed.logits).abs().max() > 1e-3
    assert (windowed.logits - _run(model, ids, mask).logits).abs().max() < 1e-4


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_bert_padding_parity(kernel):
    model = tiny.bert()
    ids, mask = tiny.token_batch(batch=2, length=20, pad_right=6)
    ref = _run(model, ids, mask)
    out = _run(model, ids, mask, kernel)
    assert max(layer_diffs(ref, out, keep=mask)) < TOL[kernel]


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_vit_parity_and_numbering(kernel):
    model = tiny.vit()
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    counter = CountCalls()
    with torch.no_grad():
        ref = model(pixel_values=pixels, output_hidden_states=True)
        with attnlab.attach(model, kernel=kernel, observe=[counter]):
            out = model(pixel_values=pixels, output_hidden_states=True)
    assert max(layer_diffs(ref, out)) < TOL[kernel]
    assert counter.per_layer == {0: 1, 1: 1}  # ViT modules have no layer_idx: numbered in call order


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_generate_routes_prefill_and_decode(arch, kernel):
    model = getattr(tiny, arch)()
    ids, mask = tiny.token_batch(batch=2, length=12, pad_left=3)
    kw = dict(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        ref = model.generate(**kw)
        counter = CountCalls()
        with attnlab.attach(model, kernel=kernel, observe=[counter]) as session:
            out = model.generate(**kw)
    assert torch.equal(ref, out)
    layers = model.config.num_hidden_layers
    assert counter.phases == {"prefill": layers, "decode": 7 * layers}
    assert session.calls == 8 * layers


def test_eager_block_size_does_not_change_results():
    model = tiny.llama()
    ids, mask = tiny.token_batch(batch=2, length=30, pad_left=4)
    whole = _run(model, ids, mask, "eager")
    blocked = _run(model, ids, mask, "eager", block_size=7)
    assert max(layer_diffs(whole, blocked, keep=mask)) < 1e-5


def test_output_attentions_from_eager_match_stock_eager():
    model = tiny.llama()
    ids, mask = tiny.token_batch(batch=2, length=16, pad_left=3)
    with torch.no_grad():
        model.set_attn_implementation("eager")
        ref = model(input_ids=ids, attention_mask=mask, output_attentions=True)
        model.set_attn_implementation("sdpa")
        with attnlab.attach(model, kernel="eager", block_size=5):
            out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    keep = mask.bool()[:, None, :, None]
    for a, b in zip(ref.attentions, out.attentions):
        assert float(((a - b).abs() * keep).max()) < 1e-5
