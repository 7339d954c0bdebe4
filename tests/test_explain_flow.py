"""Attention flow: exact mode equals networkx max-flow on the dense eager maps; pruning bounds it."""

import pytest
import torch

import tiny
from explain_ref import dense_flow, dense_maps

from attnlab.explain.capture import capture
from attnlab.explain.flow import flow_from_calls, group_flow_from_calls

CASES = {"llama_gqa": lambda: tiny.llama(), "gemma3_window": lambda: tiny.gemma3(window=4), "bert_encoder": tiny.bert}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    model = CASES[request.param]()
    ids, _ = tiny.token_batch(1, 10)
    return capture(model, ids), dense_maps(model, ids)


def test_exact_flow_matches_networkx(case):
    calls, maps = case
    for target in (9, 4):
        ref = dense_flow(maps, target)
        got = flow_from_calls(calls, torch.tensor([target]), top_m=None, max_sources=None)
        assert torch.allclose(got, ref, atol=1e-5)


def test_pruned_flow_is_a_lower_bound(case):
    calls, maps = case
    ref = dense_flow(maps, 9)
    got = flow_from_calls(calls, torch.tensor([9]), top_m=2, max_sources=None)
    assert bool((got <= ref + 1e-6).all()) and float(got.max()) > 0
    few = flow_from_calls(calls, torch.tensor([9]), top_m=None, max_sources=3)
    assert int((few > 0).sum()) <= 3


def test_group_flow_matches_networkx_super_source(case):
    import networkx as nx

    calls, maps = case
    n, layers = 10, len(maps)
    g = nx.DiGraph()
    for l, a in enumerate(maps, start=1):
        a_hat = 0.5 * torch.eye(n) + 0.5 * a.double()
        for i in range(n):
            for j in range(n):
                if a_hat[i, j] > 0:
                    g.add_edge((l - 1, j), (l, i), capacity=float(a_hat[i, j]))
    spans = [(0, 3), (3, 7), (7, 10)]
    got = group_flow_from_calls(calls, torch.tensor([9]), spans, top_m=None)
    for (s, e), value in zip(spans, got):
        h = g.copy()
        for j in range(s, e):
            h.add_edge("src", (0, j), capacity=1.0)
        assert value == pytest.approx(nx.maximum_flow_value(h, "src", (layers, 9)), abs=1e-5)
