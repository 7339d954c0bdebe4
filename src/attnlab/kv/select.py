"""Which tokens a compressed layer keeps: budgets per row, then top scores per head or across heads.

For row b with n_b real tokens (left padding excluded), `keep_last` protected tokens
(the question; always kept) and the rest compressible:

    ratio r   keep  int((n_b - keep_last) * (1 - r)) + keep_last     (r = fraction evicted, as kvpress)
    budget N  keep  max(min(N, n_b), min(keep_last, n_b))

`per_head`: each key head keeps its own top `keep` scores (ties: the earlier token).
`across_heads` (AdaKV): the layer's H_kv * keep slots go to the best scores of all its key
heads together, each head first guaranteed `alpha * keep` of its own best, so heads keep
different numbers of tokens.
"""

from __future__ import annotations

import torch

from ..errors import SpecError


def row_budgets(n_real: torch.Tensor, ratio: float | None, budget: int | None, keep_last: int) -> torch.Tensor:
    """Tokens to keep per row: long [B] from the real lengths n_real [B] (see the module docstring)."""
    if (ratio is None) == (budget is None):
        raise SpecError("give exactly one of ratio= (fraction of tokens evicted) or budget= (tokens kept)")
    protected = n_real.clamp(max=keep_last)
    if ratio is not None:
        if not 0.0 <= ratio < 1.0:
            raise SpecError(f"ratio must be in [0, 1) (the fraction evicted), got {ratio}")
        return ((n_real - protected).double() * (1.0 - ratio)).long() + protected
    if budget < 1:
        raise SpecError(f"budget must be >= 1 token, got {budget}")
    return torch.maximum(n_real.clamp(max=budget), protected)


def protect(scores: torch.Tensor, first: torch.Tensor, keep_last: int) -> torch.Tensor:
    """scores [B, H_kv, K] with padding keys -inf and the last `keep_last` keys +inf (a copy)."""
    k = scores.shape[-1]
    idx = torch.arange(k, device=scores.device)
    out = scores.float().clone()
    if keep_last > 0:
        out[..., max(0, k - keep_last):] = float("inf")
    return out.masked_fill((idx[None, :] < first[:, None])[:, None, :], float("-inf"))


def per_head(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Each (row, head) keeps its top keep[b] scores: bool [B, H_kv, K] from scores [B, H_kv, K]."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices  # [B, H_kv, K]
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order))
    return ranks < keep[:, None, None]


def across_heads(scores: torch.Tensor, keep: torch.Tensor, alpha: float = 0.2) -> torch.Tensor:
    """AdaKV: row b keeps H_kv * keep[b] tokens over all its heads, each head >= alpha * keep[b]."""
    b, h, k = scores.shape
    floor = (keep.double() * alpha).long()  # [B]
    guaranteed = per_head(scores, floor)  # [B, H_kv, K]
    ranked = scores.masked_fill(guaranteed, float("inf")).reshape(b, h * k)
    order = torch.sort(ranked, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(h * k, device=scores.device).expand_as(order))
    return (ranks < (keep * h)[:, None]).view(b, h, k)
