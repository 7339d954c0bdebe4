"""Token-view maps and rollout of the report, against the stock model's eager attention maps."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

import tiny
from attnlab.report.views import token_views


def unpack(entry: dict, k: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.frombuffer(base64.b64decode(entry["idx"]), dtype="<u2").reshape(-1, k)
    val = np.frombuffer(base64.b64decode(entry["val"]), dtype="<f2").astype(np.float32).reshape(-1, k)
    return idx, val


def stock_maps(model, ids) -> list[np.ndarray]:
    """Per layer [H, T, T] attention maps from the stock model's own eager attention."""
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=ids, output_attentions=True)
    finally:
        model.set_attn_implementation(before)
    return [a[0].float().numpy() for a in out.attentions]


def dense(idx: np.ndarray, val: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((idx.shape[0], n), dtype=np.float32)
    np.put_along_axis(out, idx.astype(np.int64), val, axis=1)
    return out


@pytest.fixture(scope="module")
def llama_case():
    model = tiny.llama()  # GQA: 4 query heads on 2 key/value heads
    ids = torch.randint(3, tiny.VOCAB, (1, 40), generator=torch.Generator().manual_seed(3))
    return model, ids, stock_maps(model, ids)


def test_maps_of_chosen_heads_match_eager(llama_case):
    model, ids, ref = llama_case
    heads = [(0, 1), (2, 3), (1, 0)]
    views = token_views(model, ids, heads, k=40, window=40, block_size=7)
    assert [(h["layer"], h["head"]) for h in views["heads"]] == heads and views["causal"]
    for entry in views["heads"]:
        idx, val = unpack(entry, 40)
        got = dense(idx, val, 40)  # all keys kept: the whole map, in float16
        np.testing.assert_allclose(got, ref[entry["layer"]][entry["head"]], atol=1e-3, rtol=1e-3)


def test_top_k_keeps_the_largest_keys(llama_case):
    model, ids, ref = llama_case
    views = token_views(model, ids, [(1, 2)], k=5, window=40)
    idx, val = unpack(views["heads"][0], 5)
    want = -np.sort(-ref[1][2], axis=1)[:, :5]  # [T, 5]
    np.testing.assert_allclose(val, want, atol=1e-3, rtol=1e-3)
    picked = np.take_along_axis(ref[1][2], idx.astype(np.int64), axis=1)
    np.testing.assert_allclose(picked, want, atol=1e-6)


def test_window_is_exact_for_a_causal_model(llama_case):
    model, ids, ref = llama_case
    views = token_views(model, ids, [(2, 0)], k=16, window=16)
    assert views["window"] == 16 and views["n_tokens"] == 40
    idx, val = unpack(views["heads"][0], 16)
    np.testing.assert_allclose(dense(idx, val, 16), ref[2][0][:16, :16], atol=1e-3, rtol=1e-3)


def test_rollout_matches_the_definition_and_issue7(llama_case):
    from attnlab.explain.capture import capture
    from attnlab.explain.rollout import rollout_from_calls

    model, ids, ref = llama_case
    n = ids.shape[1]
    views = token_views(model, ids, [], window=n, rollout_k=n)
    r = views["rollout"]
    got = dense(*unpack(r, r["k"]), n)  # [T, T]
    want = np.eye(n)
    for maps in ref:  # maps [H, T, T]; residual 0.5, heads averaged
        want = (0.5 * np.eye(n) + 0.5 * maps.mean(axis=0)) @ want
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=2e-3)
    calls = capture(model, ids)
    for target in (0, 17, n - 1):
        theirs = rollout_from_calls(calls, torch.tensor([target])).numpy()
        np.testing.assert_allclose(got[target], theirs, atol=2e-3, rtol=2e-3)


def test_non_causal_model_is_flagged():
    model = tiny.bert()
    ids = torch.randint(3, tiny.VOCAB, (1, 12), generator=torch.Generator().manual_seed(4))
    views = token_views(model, ids, [(1, 1)], k=12, window=12)
    idx, val = unpack(views["heads"][0], 12)
    assert views["causal"] is False
    np.testing.assert_allclose(dense(idx, val, 12).sum(axis=1), 1.0, atol=1e-2)
    assert (val > 0).all()  # a non-causal query sees every key


def test_bad_window():
    with pytest.raises(ValueError, match="window"):
        token_views(tiny.llama(), torch.ones(1, 4, dtype=torch.long), [], window=0)
