"""blocks.band: exact attention of sliding-window layers on just the keys each window reaches."""

import pytest
import torch

import tiny
from attnlab.core.hooks import Hooks
from attnlab.kernels import blocks as bk
from attnlab.kernels import get_kernel


class _Keep:
    def __init__(self):
        self.calls = []

    def on_call(self, call):
        self.calls.append(call)


def _calls(model, ids, mask):
    import attnlab

    keep = _Keep()
    with torch.no_grad(), attnlab.attach(model, kernel="eager", observe=[keep]):
        model(input_ids=ids, attention_mask=mask)
    return keep.calls


@pytest.mark.parametrize("chunk", [5, 16, 64])
def test_band_equals_eager_on_gemma3_window_layers_with_left_padding(chunk):
    model = tiny.gemma3()
    ids, mask = tiny.token_batch(batch=2, length=40, pad_left=7)
    windowed = [c for c in _calls(model, ids, mask) if c.sliding_window is not None]
    assert windowed and all(c.sliding_window < c.k_len for c in windowed)
    real = mask.bool()
    for call in windowed:
        ref = get_kernel("eager").forward(call, Hooks()).output
        out = bk.band(call, chunk=chunk).output
        assert (out - ref).abs()[real].max() < 1e-5


def _gemma3_logits(reference: str, kernel: str, **params):
    """Tiny Gemma3, left-padded batch of 2: (model, ids, mask, logits under `reference`,
    logits under `kernel` with `params`, that attach's session)."""
    import attnlab

    model = tiny.gemma3()
    ids, mask = tiny.token_batch(batch=2, length=40, pad_left=7)
    with torch.no_grad():
        with attnlab.attach(model, kernel=reference):
            ref = model(input_ids=ids, attention_mask=mask).logits
        with attnlab.attach(model, kernel=kernel, **params) as session:
            out = model(input_ids=ids, attention_mask=mask).logits
    return model, ids, mask, ref, out, session


def test_block_topk_runs_window_layers_as_band_and_keeps_logits():
    # window 8 <= (topk + local - 2) * block_size: window layers go to band; global layers keep every block
    _, _, mask, ref, out, session = _gemma3_logits("eager", "block_topk", topk=8, block_size=4)
    assert (out - ref).abs()[mask.bool()].max() < 1e-4
    assert session.densities and all(d == 1.0 for _, _, d in session.densities)


def test_band_rejects_calls_without_a_window():
    model = tiny.llama()
    ids, mask = tiny.token_batch(batch=1, length=12)
    call = _calls(model, ids, mask)[0]
    with pytest.raises(ValueError, match="sliding-window"):
        bk.band(call)


def test_sdpa_band_option_keeps_gemma3_logits_and_is_off_by_default():
    model, ids, mask, ref, out, _ = _gemma3_logits("sdpa", "sdpa", band=True)
    calls = _calls(model, ids, mask)
    assert (out - ref).abs()[mask.bool()].max() < 1e-4
    windowed = next(c for c in calls if c.sliding_window is not None)
    from attnlab.kernels import sdpa

    stock = sdpa.forward(windowed, Hooks()).output
    assert torch.equal(stock, get_kernel("sdpa").forward(windowed, Hooks()).output)  # default: transformers' path
    assert (sdpa.forward(windowed, Hooks(), band=True).output - stock).abs()[mask.bool()].max() < 1e-5
