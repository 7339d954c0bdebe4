"""Steering modifiers: each rule against a direct formula, only chosen heads change,
probabilities stay normalised over visible keys, padding/GQA/batches, and removing
modifiers restores the exact baseline."""

from __future__ import annotations

import pytest
import torch

from attnlab import attach, steer
from attnlab.core.call import AttnCall, Site
from attnlab.core.scores import logits

import tiny


def _call(B=2, H=4, H_kv=2, Q=6, pad_left=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, Q, 8, generator=g)
    k = torch.randn(B, H_kv, Q, 8, generator=g)
    v = torch.randn(B, H_kv, Q, 8, generator=g)
    mask = None
    if pad_left:
        mask = torch.ones(Q, Q).tril().bool()[None, None].repeat(B, 1, 1, 1)
        mask[1, :, :, :pad_left] = False
    return AttnCall(site=Site("decoder", "self", 1), query=q, key=k, value=v, mask=mask, scaling=1.0, causal=True)


def _probs(call):
    return torch.softmax(logits(call), -1)  # [B, H, Q, K]


class Grab:
    """Observer keeping each layer's post-modifier probabilities."""

    def __init__(self):
        self.maps = {}

    def on_probs(self, call, q_start, probs):
        self.maps[call.layer] = probs.clone()


def test_sink_scale_matches_formula_with_left_padding():
    call = _call(pad_left=2)
    p = _probs(call)
    out = steer.sink_scale(0.25, heads=[(1, 0), (1, 3)]).probs(call, 0, p.clone())
    for b, start in ((0, 0), (1, 2)):
        for h in (0, 3):
            for i in range(start, call.q_len):
                row = p[b, h, i].clone()
                row[start] *= 0.25
                torch.testing.assert_close(out[b, h, i], row / row.sum())
    torch.testing.assert_close(out[:, 1:3], p[:, 1:3])  # unselected heads untouched


def test_calibrate_lowers_sinks_to_factor_and_keeps_first_token():
    call = _call(B=1, H=2, H_kv=1, Q=12, seed=3)
    p = _probs(call)
    out = steer.calibrate(factor=0.5, threshold=2.0).probs(call, 0, p.clone())
    n = torch.arange(1, 13, dtype=torch.float)[None, None, :, None]  # visible keys per row
    sinks = (p > 2.0 / n) & (p > 0)
    sinks[..., 0] = False
    assert sinks.any()
    torch.testing.assert_close(out[sinks], 0.5 * p[sinks])
    assert (out[..., 0] >= p[..., 0] - 1e-7).all()  # the first token is never lowered
    torch.testing.assert_close(out.sum(-1), torch.ones_like(out.sum(-1)))
    others = ~sinks & (p > 0)
    ratio = out[others] / p[others]
    assert (ratio >= 1 - 1e-6).all()  # the freed mass goes to the others


def test_identity_mix_and_recency_formulas():
    call = _call(B=1, Q=5)
    p = _probs(call)
    out = steer.identity_mix(0.3).probs(call, 0, p.clone())
    torch.testing.assert_close(out, 0.7 * p + 0.3 * torch.eye(5)[None, None])
    out = steer.recency(3.0, window=2).probs(call, 0, p.clone())
    w = torch.ones(5, 5)
    for i in range(5):
        w[i, max(0, i - 1):i + 1] = 3.0
    ref = p * w
    torch.testing.assert_close(out, ref / ref.sum(-1, keepdim=True))


def test_temperature_scales_visible_scores_only():
    call = _call(pad_left=2)
    s = logits(call)
    out = steer.temperature(0.5, layers=[1]).scores(call, 0, s.clone())
    vis = call.visible().expand_as(s)
    torch.testing.assert_close(out[vis], s[vis] * 2)
    assert torch.equal(out[~vis], s[~vis])
    assert torch.isfinite(torch.softmax(out, -1)[vis]).all()


def test_emphasize_moves_alpha_onto_span():
    call = _call(B=1, Q=8)
    p = _probs(call)
    mod = steer.emphasize(0.4, tokens=[2, 3])
    out = mod.probs(call, 0, p.clone())
    before, after = p[..., 2:4].sum(-1), out[..., 2:4].sum(-1)
    rows = slice(2, None)  # queries that can see the span
    torch.testing.assert_close(after[..., rows], 0.6 * before[..., rows] + 0.4)
    torch.testing.assert_close(out[..., :2, :], p[..., :2, :])  # queries before the span: unchanged


@pytest.mark.real
def test_span_tokens_from_substring_and_char_range(smollm2):
    smollm2_tok = smollm2[1]
    text = "The secret number of Horatio is 4817. Remember it."
    by_sub = steer.span_tokens(smollm2_tok, text, "Horatio is 4817")
    start = text.index("Horatio")
    assert by_sub == steer.span_tokens(smollm2_tok, text, f"{start}-{start + 15}")
    ids = smollm2_tok(text)["input_ids"]
    assert "Horatio" in smollm2_tok.decode([ids[i] for i in by_sub])
    with pytest.raises(ValueError, match="does not occur"):
        steer.span_tokens(smollm2_tok, text, "Ophelia")


ALL = [
    steer.sink_scale(0.3, layers=[1]),
    steer.calibrate(0.3, threshold=1.05, layers="1-2"),
    steer.temperature(0.7, heads="1:0;2:3"),
    steer.identity_mix(0.2, layers=[1]),
    steer.recency(2.0, window=3, layers=[1]),
    steer.emphasize(0.3, tokens=[3, 4, 5], layers=[1]),
]


@pytest.mark.parametrize("mod", ALL, ids=lambda m: type(m).__name__)
def test_probs_stay_normalised_and_only_chosen_layers_change(mod):
    model = tiny.llama()  # 3 layers, 4 heads, 2 kv heads (GQA)
    ids, mask = tiny.token_batch(batch=2, length=16, pad_left=4)
    base, steered = Grab(), Grab()
    with torch.no_grad():
        with attach(model, kernel="eager", observe=[base]):
            model(input_ids=ids, attention_mask=mask)
        with attach(model, kernel="eager", modify=[mod], observe=[steered]):
            model(input_ids=ids, attention_mask=mask)
    assert torch.equal(base.maps[0], steered.maps[0])  # layer 0 is never selected
    p = steered.maps[1]
    hidden = ~torch.ones(16, 16).tril().bool().expand_as(p).clone()
    hidden[1, :, :, :4] = True
    real = mask[:, None, :, None].bool().expand_as(p)  # real query rows
    assert float(p[hidden & real].abs().max()) == 0.0
    sums = p.sum(-1)[mask[:, None, :].bool().expand_as(p.sum(-1))]
    torch.testing.assert_close(sums, torch.ones_like(sums))
    assert not torch.allclose(p, base.maps[1])


@pytest.mark.parametrize("mod", ALL, ids=lambda m: type(m).__name__)
def test_left_padding_does_not_change_a_steered_row(mod):
    """The same sequence alone and left-padded in a batch gives the same steered output."""
    model = tiny.llama()
    ids, mask = tiny.token_batch(batch=2, length=16, pad_left=4)
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    shifted = steer.emphasize(0.3, tokens=[7, 8, 9], layers=[1]) if isinstance(mod, steer.emphasize(0, tokens=[0]).__class__) else mod
    with torch.no_grad(), attach(model, kernel="eager", modify=[shifted]):
        batch = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[1, 4:]
    alone_mod = steer.emphasize(0.3, tokens=[3, 4, 5], layers=[1]) if shifted is not mod else mod
    with torch.no_grad(), attach(model, kernel="eager", modify=[alone_mod]):
        alone = model(input_ids=ids[1:, 4:]).logits[0]
    torch.testing.assert_close(batch, alone, atol=2e-5, rtol=1e-4)


def test_removing_modifiers_restores_exact_baseline():
    model = tiny.qwen2()  # GQA with one kv head
    ids, mask = tiny.token_batch(batch=2, length=20, pad_right=5)
    run = lambda **kw: _logits(model, ids, mask, **kw)
    base = run(kernel="eager")
    steered = run(kernel="eager", modify=[steer.sink_scale(0.2), steer.calibrate(0.5, 1.5), steer.mask(heads="0:1")])
    assert not torch.allclose(base, steered)
    assert torch.equal(run(kernel="eager"), base)
    sdpa = run(kernel="sdpa")
    run(kernel="sdpa", modify=[steer.scale(0.5, layers="all")])
    assert torch.equal(run(kernel="sdpa"), sdpa)


def _logits(model, ids, mask, **kw):
    with torch.no_grad(), attach(model, **kw):
        return model(input_ids=ids, attention_mask=mask).logits


def test_mask_and_scale_work_on_sdpa_like_on_eager():
    model = tiny.llama()
    ids, mask = tiny.token_batch(batch=2, length=16, pad_left=3)
    for mod in (steer.mask(heads="1:0;2:3"), steer.scale(0.0, heads=[(1, 0), (2, 3)]), steer.scale(1.7, layers=[0])):
        eager = _logits(model, ids, mask, kernel="eager", modify=[mod])
        sdpa = _logits(model, ids, mask, kernel="sdpa", modify=[mod])
        keep = mask.bool()
        torch.testing.assert_close(eager[keep], sdpa[keep], atol=1e-5, rtol=1e-4)
    masked = _logits(model, ids, mask, kernel="sdpa", modify=[steer.mask(heads="1:0;2:3")])
    zero = _logits(model, ids, mask, kernel="sdpa", modify=[steer.scale(0.0, heads="1:0;2:3")])
    assert torch.equal(masked, zero)


def test_mask_really_zeroes_the_head_output():
    call = _call()
    out = torch.randn(2, 6, 4, 8)  # [B, Q, H, Dv]
    got = steer.mask(heads="1:2").output(call, out)
    assert float(got[:, :, 2].abs().max()) == 0.0
    assert torch.equal(got[:, :, [0, 1, 3]], out[:, :, [0, 1, 3]])
    assert torch.equal(steer.mask(heads="0:2").output(call, out), out)  # other layer


def test_probability_modifiers_are_refused_by_sdpa():
    model = tiny.llama()
    with pytest.raises(ValueError, match="does not expose"):
        with attach(model, kernel="sdpa", modify=[steer.sink_scale(0.5)]):
            pass


def test_bad_parameters_are_clear_errors():
    for bad in (lambda: steer.sink_scale(0), lambda: steer.calibrate(1.5), lambda: steer.identity_mix(2),
                lambda: steer.temperature(-1), lambda: steer.recency(2, window=0),
                lambda: steer.emphasize(0.5), lambda: steer.select(layers="a-b")):
        with pytest.raises(ValueError):
            bad()
