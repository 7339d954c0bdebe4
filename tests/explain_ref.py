"""Dense references for the explanation tests: stock eager output_attentions maps."""

from __future__ import annotations

import torch


def dense_maps(model, ids) -> list[torch.Tensor]:
    """Head-averaged attention of every layer from the stock eager model: list of [T, T]."""
    from attnlab.explain.capture import base_model

    old = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = base_model(model)(input_ids=ids, output_attentions=True)
    finally:
        model.set_attn_implementation(old)
    return [a[0].mean(0).float() for a in out.attentions]


def dense_rollout(maps, target: int, residual: float = 0.5) -> torch.Tensor:
    """Row `target` of A_hat_L ... A_hat_1 built from the full matrices: [T]."""
    n = maps[0].shape[0]
    product = torch.eye(n, dtype=torch.float64)
    for a in maps:
        product = (residual * torch.eye(n) + (1 - residual) * a).double() @ product
    return product[target].float()


def dense_flow(maps, target: int, residual: float = 0.5) -> torch.Tensor:
    """Abnar & Zuidema's attention flow with networkx on the full layered graph: [T]."""
    import networkx as nx

    n, layers = maps[0].shape[0], len(maps)
    g = nx.DiGraph()
    for l, a in enumerate(maps, start=1):
        a_hat = residual * torch.eye(n) + (1 - residual) * a.double()
        for i in range(n):
            for j in range(n):
                if a_hat[i, j] > 0:
                    g.add_edge((l - 1, j), (l, i), capacity=float(a_hat[i, j]))
    return torch.tensor([nx.maximum_flow_value(g, (0, j), (layers, target)) if (0, j) in g else 0.0
                         for j in range(n)], dtype=torch.float32)
