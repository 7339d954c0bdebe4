"""Attention x gradient equals the same quantity from the stock eager model's autograd."""

import torch

import tiny

from attnlab.explain.gradient import gradient_from_ids


def _reference(model, ids, targets):
    model.set_attn_implementation("eager")
    try:
        out = model(input_ids=ids, output_attentions=True)
        logp = torch.log_softmax(out.logits[0, targets], dim=-1).gather(1, ids[0, targets + 1][:, None]).sum()
        grads = torch.autograd.grad(logp, out.attentions)
    finally:
        model.set_attn_implementation("sdpa")
    rel = torch.zeros(ids.shape[1])
    for a, g in zip(out.attentions, grads):
        rel += (a[0][:, targets] * g[0][:, targets]).sum(0).abs().sum(0).detach()
    return rel


def test_attention_x_gradient_matches_stock_autograd():
    for model in (tiny.llama(), tiny.gemma3(window=6)):
        ids, _ = tiny.token_batch(1, 16)
        targets = torch.tensor([12, 14])
        got = gradient_from_ids(model, ids, targets)
        ref = _reference(model, ids, targets)
        assert torch.allclose(got, ref, atol=1e-5, rtol=1e-4)
        assert float(got[15]) == 0.0 and float(got.sum()) > 0  # causal: nothing after the last target


def test_last_position_has_no_next_token():
    import pytest

    ids, _ = tiny.token_batch(1, 8)
    with pytest.raises(ValueError):
        gradient_from_ids(tiny.llama(), ids, torch.tensor([7]))
