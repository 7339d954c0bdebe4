"""`chunked` equals `eager` always (fp32, 1e-5): per call, per layer, logits, generate()."""

import pytest
import torch

import attnlab
import tiny
from attnlab.core.call import AttnCall, Site
from attnlab.core.hooks import Hooks
from attnlab.kernels import chunked, eager
from helpers import layer_diffs


def _call(b=2, h=4, h_kv=2, q=37, k=37, d=8, causal=True, window=None, softcap=None, pad=0, bias=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = None
    if pad:
        mask = torch.ones(b, 1, q, k, dtype=torch.bool).tril(k - q)
        mask[1, :, :, :pad] = False  # row 1 is left-padded
    return AttnCall(
        site=Site("decoder", "self", 0), query=torch.randn(b, h, q, d, generator=g), key=torch.randn(b, h_kv, k, d, generator=g),
        value=torch.randn(b, h_kv, k, d, generator=g), mask=mask, scaling=d ** -0.5, causal=causal,
        sliding_window=window, softcap=softcap,
        bias=torch.randn(1, h, q, k, generator=g) if bias else None)


CASES = {
    "causal": {}, "gqa1": dict(h_kv=1), "mha": dict(h_kv=4), "noncausal": dict(causal=False),
    "window": dict(window=5), "softcap": dict(softcap=2.0), "padded": dict(pad=6), "bias": dict(bias=True),
    "decode": dict(q=1, k=40), "extend": dict(q=9, k=40),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("blocks", [(5, 7), (64, 3), (256, 1024)])
def test_chunked_equals_eager_per_call(case, blocks):
    call = _call(**CASES[case])
    ref = eager.forward(call, Hooks()).output
    out = chunked.forward(call, Hooks(), block_size=blocks[0], key_block=blocks[1])
    assert out.output.shape == ref.shape
    diff = (out.output - ref).abs()  # [B, Q, H, Dv]
    pad = CASES[case].get("pad", 0)
    diff[1, :pad] = 0  # queries that are padding themselves see nothing: meaningless rows
    assert float(diff.max()) < 1e-5
    assert out.density == 1.0


@pytest.mark.parametrize("arch,pad_left", [("llama", 0), ("llama", 5), ("gemma3", 5)])
def test_chunked_model_parity_per_layer(arch, pad_left):
    model = getattr(tiny, arch)()
    ids, mask = tiny.token_batch(batch=2, length=30, pad_left=pad_left)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        with attnlab.attach(model, kernel="chunked", block_size=7, key_block=5):
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert max(layer_diffs(ref, out, keep=mask)) < 1e-5


def test_chunked_generate_equals_stock():
    model = tiny.gemma3(window=6)
    ids, mask = tiny.token_batch(batch=2, length=14, pad_left=3)
    kw = dict(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        ref = model.generate(**kw)
        with attnlab.attach(model, kernel="chunked", block_size=4, key_block=4):
            out = model.generate(**kw)
    assert torch.equal(ref, out)


def test_chunked_rejects_bad_parameters():
    with pytest.raises(ValueError, match="block_size"):
        chunked.forward(_call(), Hooks(), block_size=0)
    with pytest.raises(ValueError, match="no parameter"):
        attnlab.kernels.parse_spec("chunked:blocksize=4")
