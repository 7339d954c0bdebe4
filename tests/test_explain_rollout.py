"""Rollout from captured queries/keys equals the dense product of eager output_attentions maps."""

import pytest
import torch

import tiny
from explain_ref import dense_maps, dense_rollout

from attnlab.explain.capture import capture, head_mean_rows
from attnlab.explain.rollout import rollout, rollout_from_calls

CASES = {
    "llama_gqa": lambda: tiny.llama(),
    "qwen2_one_kv_head": tiny.qwen2,
    "gemma3_window": lambda: tiny.gemma3(window=8),
    "bert_encoder": tiny.bert,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rollout_matches_dense_product(name):
    model = CASES[name]()
    ids, _ = tiny.token_batch(1, 24)
    maps = dense_maps(model, ids)
    calls = capture(model, ids)
    for call, a in zip(calls, maps):  # per-layer parity of the recomputed rows first
        assert torch.allclose(head_mean_rows(call, torch.arange(24)), a, atol=1e-6)
    for target in (23, 10, 0):
        got = rollout_from_calls(calls, torch.tensor([target]), block_size=5)
        assert torch.allclose(got, dense_rollout(maps, target), atol=1e-5)
        assert abs(float(got.sum()) - 1.0) < 1e-5


def test_gemma3_window_actually_limits_rows():
    model = tiny.gemma3(window=8)
    ids, _ = tiny.token_batch(1, 24)
    rows = head_mean_rows(capture(model, ids)[0], torch.tensor([23]))[0]
    assert float(rows[:16].abs().max()) == 0.0 and float(rows[16:].sum()) == pytest.approx(1.0, abs=1e-6)


def test_several_targets_sum_their_rows():
    model = tiny.llama()
    ids, _ = tiny.token_batch(1, 16)
    maps = dense_maps(model, ids)
    got = rollout_from_calls(capture(model, ids), torch.tensor([7, 15]))
    assert torch.allclose(got, dense_rollout(maps, 7) + dense_rollout(maps, 15), atol=1e-5)


class _Tok:
    """Minimal tokenizer: one token per character code (mod the tiny vocabulary)."""

    pad_token = eos_token = None

    def __call__(self, texts, return_tensors=None, padding=False, **_):
        return {"input_ids": torch.tensor([[3 + ord(c) % 120 for c in t] for t in texts])}


def test_public_rollout_returns_numpy_row():
    model = tiny.llama()
    rel = rollout(model, _Tok(), "to be or not to be", target=-1)
    assert rel.shape == (18,) and abs(rel.sum() - 1.0) < 1e-5
    with pytest.raises(ValueError):
        rollout(model, _Tok(), "abc", target=5)
