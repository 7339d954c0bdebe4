"""Eviction after prefill: score the layer's prompt tokens, pick per row and head, compress."""

from __future__ import annotations

import torch

from ..core.call import AttnCall
from .policy import KVPolicy


def choose(policy: KVPolicy, call: AttnCall, memo: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt tokens the layer keeps, bool [B, H_kv, K], and the scorer's scores [B, H_kv, K].

    memo: optional dict reusing a layer's scores across policies that differ only in their
    budget (scores do not depend on it), keyed by (layer, scorer, its parameters)."""
    from .scorers import SCORERS, first_real
    from .select import across_heads, per_head, protect, row_budgets

    first = first_real(call)  # [B]
    keep = row_budgets(call.k_len - first, policy.ratio, policy.budget, policy.keep_last)  # [B]
    params = dict(policy.scorer_params)
    if policy.scorer == "snapkv":  # the window never exceeds what the row keeps
        params["window"] = max(1, min(params.get("window", 64), int(keep.min())))
    key = (call.layer, policy.scorer, tuple(sorted(params.items())))
    raw = None if memo is None else memo.get(key)
    if raw is None:
        with torch.no_grad():
            raw = SCORERS[policy.scorer](call, **params)  # [B, H_kv, K]
        if memo is not None:
            memo[key] = raw
    scores = protect(raw, first, policy.keep_last)
    if policy.adaptive:
        return across_heads(scores, keep, policy.alpha), raw
    return per_head(scores, keep), raw


def compress_prefill(policy: KVPolicy, layer, call: AttnCall, memo: dict | None = None) -> None:
    """Replace the layer's full prompt cache by the tokens `choose` keeps; slot positions are
    counted from each row's first real token."""
    from .scorers import first_real

    if call.q_offset != 0 or call.k_len != layer.physical_length():
        return  # not a whole-prompt prefill of this cache: nothing to compress safely
    selected, raw = choose(policy, call, memo)
    positions = torch.arange(call.k_len, device=call.device)[None, None, :] - first_real(call)[:, None, None]
    if policy.decode_budget is not None:
        layer.score = raw.float()
    layer.first = first_real(call)
    layer.compress(selected, positions.expand_as(selected).contiguous())
