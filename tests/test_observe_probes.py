"""Probes: induction / previous-token scores and the retrieval score against direct computations."""

import math

import pytest
import torch

import tiny
from attnlab.observe.kinds import KINDS, label
from attnlab.observe.probes import _random_tokens, induction_scores


class FakeTokenizer:
    """Just what the induction probe needs from a tokenizer, for the tiny random models."""

    all_special_ids = [0, 1, 2]

    def __len__(self):
        return tiny.VOCAB


def _stock_maps(model, ids):
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True).attentions
    finally:
        model.set_attn_implementation("sdpa")


@pytest.mark.parametrize("build", [tiny.llama, tiny.bert])
def test_induction_formula_equals_direct_computation_from_maps(build):
    model, tok, period = build(), FakeTokenizer(), 12
    df = induction_scores(model, tok, length=period, batch=3, seed=7, block_size=5)
    ids = _random_tokens(tok, period, 3, 7)  # [3, 24], second half == first half
    assert torch.equal(ids[:, :period], ids[:, period:]) and not torch.isin(ids, torch.tensor([0, 1, 2])).any()
    i = torch.arange(period, 2 * period)
    for layer, a in enumerate(_stock_maps(model, ids)):  # a [B, H, T, T]
        ind = a[:, :, i, i - period + 1].mean((0, 2))
        prev = a[:, :, i, i - 1].mean((0, 2))
        got = df[df.layer == layer].sort_values("head")
        assert torch.allclose(torch.tensor(got.induction.values), ind.double(), atol=1e-5)
        assert torch.allclose(torch.tensor(got.prev_token_probe.values), prev.double(), atol=1e-5)


def test_labels_follow_thresholds_in_order():
    base = {"sink_mass": 0.1, "local_mass": 0.1, "prev_token": 0.1}
    assert label(base) == "global"
    assert label({**base, "local_mass": 0.6}) == "local"
    assert label({**base, "sink_mass": 0.7, "local_mass": 0.6}) == "sink"
    assert label({**base, "prev_token": 0.8, "sink_mass": 0.7}) == "previous-token"
    assert label({**base, "induction": 0.4, "prev_token_probe": 0.9}) == "induction"
    assert label({**base, "induction": 0.4, "retrieval": 0.5, "retrieval_events": 12}) == "retrieval"
    assert label({**base, "retrieval": 0.5, "retrieval_events": 2}) == "global"  # too few events to trust
    assert label({**base, "induction": math.nan, "retrieval": math.nan}) == "global"
    assert set(KINDS) == {"sink", "previous-token", "induction", "retrieval", "local", "global"}


@pytest.mark.real
def test_real_smollm2_has_induction_and_previous_token_heads(smollm2):
    model, tok = smollm2
    df = induction_scores(model, tok, length=32, batch=2)
    assert len(df) == 270
    assert df.induction.max() > 0.5 and df.prev_token_probe.max() > 0.5
    assert (df.induction > 0.3).sum() < 30  # a few specialised heads, not all
    best = df.loc[df.induction.idxmax()]
    assert best.layer > 2  # induction needs a previous-token head in an earlier layer


def _direct_retrieval(model, tok, case):
    """Hits per (layer, head) from the stock eager model's own generate(output_attentions=True)."""
    from attnlab.observe.probes import _needle_positions

    ids, pos = _needle_positions(tok, case)
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model.generate(ids[None], attention_mask=torch.ones_like(ids)[None], do_sample=False,
                                 max_new_tokens=len(pos) + 1, output_attentions=True,
                                 return_dict_in_generate=True, pad_token_id=tok.eos_token_id)
    finally:
        model.set_attn_implementation("sdpa")
    new = out.sequences[0, ids.shape[0]:]
    hits, events = torch.zeros(30, 9), 0
    for t, token in enumerate(new.tolist()):
        sources = pos[ids[pos] == token]
        if len(sources) == 0:
            continue
        events += 1
        for layer, a in enumerate(out.attentions[t]):  # a [1, H, q, K]; the last query predicts token t
            hits[layer] += torch.isin(a[0, :, -1].argmax(-1), sources).float()
    return hits / max(events, 1), events


@pytest.mark.real
def test_real_smollm2_retrieval_score_equals_direct_computation(smollm2):
    from attnlab.bench.corpora import shakespeare
    from attnlab.bench.needles import make_cases
    from attnlab.observe.probes import retrieval_scores

    model, tok = smollm2
    df = retrieval_scores(model, tok, n_needles=1, length=256, seed=1)
    assert df.attrs["cases"][0]["correct"], df.attrs["cases"]
    events = int(df.retrieval_events.iloc[0])
    assert events == len(df.attrs["cases"][0]["answer"])  # every digit copied from the needle
    case = make_cases(tok, shakespeare("hamlet"), [256], [0.5], seed=1)[0]
    ref, ref_events = _direct_retrieval(model, tok, case)
    assert ref_events == events
    got = torch.tensor(df.sort_values(["layer", "head"]).retrieval.values, dtype=torch.float32).view(30, 9)
    assert torch.equal(got, ref)
    assert got.max() >= 0.75  # some head points at the needle digit it copies
