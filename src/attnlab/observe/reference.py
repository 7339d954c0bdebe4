"""The slow exact reference: the statistics of `HeadStats`, from full attention maps.

This is what TransformerLens-style tools must do: run eager attention with
`output_attentions=True`, hold every layer's [B, H, T, T] map, and reduce. It is written
independently of the streaming code (visibility from the rules, not from attnlab's
calls) so that the tests compare two implementations, and the benchmark times it.
"""

from __future__ import annotations

import torch


def visibility(real: torch.Tensor, causal: bool, window: int | None) -> torch.Tensor:
    """vis [B, T, T] bool: query i may see key j (real key, causal, inside the window).

    window w: causal, keys i - w < j <= i; non-causal, keys |i - j| < w (both sides, as
    transformers' bidirectional sliding mask |i - j| <= w' with w = w' + 1).
    """
    t = real.shape[1]
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None, :]
    rule = torch.ones(t, t, dtype=torch.bool)
    if causal:
        rule &= j <= i
    if window is not None:
        rule &= (j > i - window) if causal else ((i - j).abs() < window)
    return rule[None] & real[:, None, :].bool()


def layer_stats(attn: torch.Tensor, real: torch.Tensor, causal: bool, window: int | None = None,
                local_window: int = 32, dtype=torch.float64) -> dict:
    """Statistics of one layer's map attn [B, H, T, T] (real [B, T] bool); [H] per statistic.

    dtype: float64 (tests) or float32 (the benchmark: no 2x copy of a 4096-token map).
    """
    a = attn.to(dtype)
    b, h, t, _ = a.shape
    real = real.bool()
    vis = visibility(real, causal, window)  # [B, T, T]
    start = real.to(dtype).argmax(1)  # [B]
    pos = torch.arange(t, dtype=dtype)
    wq = real.to(dtype)[:, None, :]  # [B, 1, T] query weights
    after = wq * (pos[None, None, :] > start[:, None, None]).to(dtype)
    ent = -torch.xlogy(a, a).sum(-1)  # [B, H, T]
    n_vis = vis.sum(-1).to(dtype)[:, None, :]  # [B, 1, T]
    use = wq * (n_vis >= 2).to(dtype)
    diff = pos[:, None] - pos[None, :]  # [T, T] i - j
    dist = (a * (diff if causal else diff.abs())).sum(-1)
    local = (a * (diff.abs() < local_window).to(dtype)).sum(-1)
    idx = torch.arange(t)
    first = a[torch.arange(b)[:, None], :, idx[None, :].expand(b, t), start.long()[:, None].expand(b, t)]  # [B, T, H]
    prev = a[:, :, idx, (idx - 1).clamp(min=0)]
    own = a[:, :, idx, idx]
    off = ~torch.eye(t, dtype=torch.bool)  # i != j
    received = (a * (wq[..., None] * off)).sum(2)  # [B, H, T]
    support = ((vis & off) * real[:, :, None]).sum(1).to(dtype)[:, None, :]  # [B, 1, T]

    def mean(x, w):
        return (x * w).sum((0, 2)) / w.expand_as(x).sum((0, 2)).clamp(min=1)

    return {
        "entropy": mean(ent, wq), "entropy_norm": mean(ent / n_vis.clamp(min=2).log(), use),
        "sink_mass": mean(first.permute(0, 2, 1), after), "prev_token": mean(prev, after),
        "self_mass": mean(own, wq), "mean_distance": mean(dist, wq), "local_mass": mean(local, wq),
        "received": received, "support": support,
    }


def stats_from_maps(maps, real: torch.Tensor, causal: bool, windows=None, local_window: int = 32) -> dict:
    """{layer: layer_stats(...)} for maps = per-layer [B, H, T, T] (e.g. outputs.attentions).

    windows: per-layer sliding window (None = full attention), default all None.
    """
    windows = windows or [None] * len(maps)
    return {layer: layer_stats(m, real, causal, windows[layer], local_window) for layer, m in enumerate(maps)}


def cross_layer_stats(attn: torch.Tensor, q_real: torch.Tensor, k_real: torch.Tensor, dtype=torch.float64) -> dict:
    """Statistics of one cross-attention map attn [B, H, Q, K] (decoder queries on encoder keys).

    q_real [B, Q], k_real [B, K] bool. Every real query sees every real key; there are no
    shared positions, so prev_token, self_mass, mean_distance and local_mass are NaN and
    received[j] averages over all real queries (no i == j term). sink_mass = mass on each
    row's first real key.
    """
    a = attn.to(dtype)
    b, h, q, k = a.shape
    wq = q_real.to(dtype)[:, None, :]  # [B, 1, Q]
    ent = -torch.xlogy(a, a).sum(-1)  # [B, H, Q]
    n_vis = k_real.to(dtype).sum(-1)[:, None, None].expand(b, 1, q)  # [B, 1, Q]
    use = wq * (n_vis >= 2).to(dtype)
    first = k_real.to(dtype).argmax(1)  # [B]
    sink = a[torch.arange(b), :, :, first]  # [B, H, Q]

    def mean(x, w):
        return (x * w).sum((0, 2)) / w.expand_as(x).sum((0, 2)).clamp(min=1)

    nan = torch.full((h,), float("nan"), dtype=dtype)
    support = (q_real.to(dtype).sum(1)[:, None] * k_real.to(dtype))[:, None, :]  # [B, 1, K]
    return {
        "entropy": mean(ent, wq), "entropy_norm": mean(ent / n_vis.clamp(min=2).log(), use),
        "sink_mass": mean(sink, wq), "prev_token": nan, "self_mass": nan, "mean_distance": nan,
        "local_mass": nan, "received": (a * wq[..., None]).sum(2), "support": support,
    }
