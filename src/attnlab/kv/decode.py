"""Eviction during decoding: keep each head of a compressed layer within `decode_budget` tokens.

After every decode call of a layer, once a head holds `decode_budget + decode_every` tokens,
every head is cut back to `decode_budget` (evicting in steps of `decode_every` keeps the
gathers rare). The newest max(keep_last, decode_every) tokens are never evicted. Decode
scores per policy (slot s of head h; `pos` = token index in its row):

    h2o        accumulated attention: the prefill score plus every decode query's probability
    tova, snapkv   the current query's attention (TOVA's rule; SnapKV's window shrinks to 1)
    streaming  the first `sinks` tokens, then recency (pos)
    knorm      minus the key norm
    random     uniform random
"""

from __future__ import annotations

import torch

from ..core import scores as sc
from ..core.call import AttnCall
from .policy import KVPolicy


def _attention(call: AttnCall, heads: str = "group") -> torch.Tensor:
    """The call's last query's attention per key head: [B, H_kv, K] fp32 (the scorers' head mean)."""
    from .scorers import _group_mean

    return _group_mean(sc.probs(call, sc.logits(call, call.q_len - 1, call.q_len))[:, :, 0], call, heads)


def decode_scores(policy: KVPolicy, layer, call: AttnCall) -> torch.Tensor:
    """Scores [B, H_kv, L] of the layer's slots for decode-time eviction (higher = keep)."""
    name = policy.scorer
    if name == "h2o":
        return layer.score
    if name in ("tova", "snapkv"):
        return _attention(call, policy.scorer_params.get("heads", "group"))
    if name == "streaming":
        sinks = policy.scorer_params.get("sinks", 4)
        pos = layer.pos.float()
        return torch.where(pos < sinks, float("inf"), pos)
    if name == "knorm":
        return -layer.keys.float().norm(dim=-1)
    g = torch.Generator().manual_seed(policy.scorer_params.get("seed", 0) * 7919 + call.layer + layer.seen)
    return torch.rand(layer.keep.shape, generator=g).to(call.device)


def hold_budget(policy: KVPolicy, layer, call: AttnCall) -> None:
    """Accumulate decode scores and, when a head is over budget + step, evict down to the budget."""
    from .select import per_head

    if layer.keep is None:  # no prefill eviction: start tracking now
        b, h, k = layer.keys.shape[:3]
        layer.keep = torch.ones(b, h, k, dtype=torch.bool, device=layer.keys.device)
        layer.pos = torch.arange(k, device=layer.keys.device).expand(b, h, k).contiguous()
        layer.score = torch.zeros(b, h, k, device=layer.keys.device)
    if policy.scorer == "h2o":
        if layer.score is None:
            layer.score = torch.zeros(layer.keep.shape, device=layer.keys.device)
        layer.score = layer.score + _attention(call)
    if int(layer.visible_counts().max()) < policy.decode_budget + policy.decode_every:
        return
    scores = decode_scores(policy, layer, call).float().clone()
    recent = max(policy.keep_last, policy.decode_every)
    scores[..., -recent:] = float("inf")
    scores = scores.masked_fill(~layer.keep, float("-inf"))
    budget = torch.full((layer.keep.shape[0],), policy.decode_budget, dtype=torch.long, device=scores.device)
    layer.compress(per_head(scores, budget) & layer.keep)
