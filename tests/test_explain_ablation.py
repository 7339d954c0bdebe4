"""Leave-one-out ablation and the context layout, on a tiny Llama against direct log-probs."""

import pytest
import torch

import tiny

from attnlab.explain.ablation import answer_log_prob, leave_one_out
from attnlab.explain.context import Context, split_passages


def _direct_log_prob(model, ids: list, n_answer: int) -> float:
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
    start = len(ids) - n_answer
    return float(sum(logp[p - 1, ids[p]] for p in range(start, len(ids))))


def _ctx():
    return Context(prefix=[1], passages=[[5, 6, 7], [8, 9], [10, 11, 12, 13]], question=[20, 21], answer=[30, 31, 32])


def test_context_layout_and_targets():
    ctx = _ctx()
    assert ctx.ids() == [1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 20, 21, 30, 31, 32]
    assert ctx.ids(drop=1) == [1, 5, 6, 7, 10, 11, 12, 13, 20, 21, 30, 31, 32]
    assert ctx.spans() == [(1, 4), (4, 6), (6, 10)]
    assert ctx.answer_targets().tolist() == [11, 12, 13]
    assert ctx.answer_targets(drop=2).tolist() == [7, 8, 9]


def test_leave_one_out_equals_direct_log_probs():
    model = tiny.llama()
    ctx = _ctx()
    loo = leave_one_out(model, ctx)
    full = _direct_log_prob(model, ctx.ids(), 3)
    assert loo["full"] == pytest.approx(full, abs=1e-4)
    for k in range(3):
        without = _direct_log_prob(model, ctx.ids(drop=k), 3)
        assert loo["without"][k] == pytest.approx(without, abs=1e-4)
        assert loo["importance"][k] == pytest.approx(full - without, abs=1e-4)
    assert len(set(round(x, 6) for x in loo["importance"])) == 3  # passages really differ


def test_answer_log_prob_only_counts_answer_tokens():
    model = tiny.llama()
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    one = answer_log_prob(model, ids, torch.tensor([4]))
    two = answer_log_prob(model, ids, torch.tensor([3, 4]))
    assert one == pytest.approx(_direct_log_prob(model, ids[0].tolist(), 1), abs=1e-5)
    assert two == pytest.approx(_direct_log_prob(model, ids[0].tolist(), 2), abs=1e-5)


def test_split_passages():
    assert split_passages("a\nb\n---\nc\n") == ["a\nb", "c"]
    assert split_passages("a\n\n\nb c\n\n") == ["a", "b c"]
