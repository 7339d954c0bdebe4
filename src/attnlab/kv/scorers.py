"""How important each cached token is: one scorer per eviction policy.

A scorer maps the prefill call of a layer to scores [B, H_kv, K] fp32 (higher = keep).
Scores of padding keys do not matter (`select` never keeps them). Attention-based scorers
build their probabilities with `core.scores` (masks, GQA, softcaps and sink logits applied
as the kernels apply them) a block of queries at a time, never as an n x n map, and average
the G query heads of each key head (a key head is kept or evicted for all of them).

    streaming  sinks + window (StreamingLLM): the first `sinks` real tokens, then the most recent
    snapkv     mean attention of the last `window` queries, average-pooled over `pool` keys (SnapKV)
    h2o        accumulated attention: column sums of the whole map over the queries that see
               each key, divided by their number (H2O; kvpress's ObservedAttentionPress)
    tova       attention of the last query (TOVA), per key head (heads=all: over all heads)
    knorm      minus the L2 norm of the key (low-norm keys draw attention; Devoto et al.)
    random     uniform random (control), seeded per layer and drawn for the real tokens only
"""

from __future__ import annotations

import torch

from ..core import scores as sc
from ..core.call import AttnCall

INF = float("inf")


def first_real(call: AttnCall) -> torch.Tensor:
    """Index of each row's first real (non-padding) key: long [B] (left padding)."""
    return sc.first_seen_key(call)


def _group_mean(scores: torch.Tensor, call: AttnCall, heads: str = "group") -> torch.Tensor:
    """[B, H, K] per query head -> [B, H_kv, K]: the mean over each key head's G query heads,
    or (heads="all") the mean over every query head, the same scores for each key head."""
    b, _, k = scores.shape
    if heads == "all":
        return scores.mean(1, keepdim=True).expand(b, call.num_kv_heads, k).contiguous()
    return scores.view(b, call.num_kv_heads, call.groups, k).mean(2)


def _real_queries(call: AttnCall, q0: int, q1: int) -> torch.Tensor:
    """Which queries [q0, q1) are real tokens: fp32 [B, 1, q, 1] (padding queries see nothing real)."""
    idx = torch.arange(q0, q1, device=call.device) + call.q_offset  # key index of each query
    return (idx[None, :] >= first_real(call)[:, None]).float()[:, None, :, None]


def _probs(call: AttnCall, q0: int, q1: int, k0: int = 0, k1: int | None = None) -> torch.Tensor:
    """Probabilities of queries [q0, q1) on keys [k0, k1) (every key they may see must lie
    there), padding query rows zeroed: [B, H, q, k] fp32."""
    return sc.probs(call, sc.logits(call, q0, q1, k0, k1)) * _real_queries(call, q0, q1)


def streaming(call: AttnCall, sinks: int = 4) -> torch.Tensor:
    """Sinks first, then recency: +inf for the first `sinks` real tokens, else the key index."""
    idx = torch.arange(call.k_len, device=call.device).float()  # [K]
    rel = idx[None, :] - first_real(call)[:, None].float()  # [B, K] position within the row
    out = torch.where(rel < sinks, INF, idx[None, :].expand_as(rel))
    return out[:, None, :].expand(call.batch, call.num_kv_heads, call.k_len).clone()


def snapkv(call: AttnCall, window: int = 64, pool: int = 5) -> torch.Tensor:
    """Mean attention of the last `window` real queries on each key, pooled; the window itself +inf."""
    q0 = max(0, call.q_len - window)
    p = _probs(call, q0, call.q_len)  # [B, H, w, K]
    n = _real_queries(call, q0, call.q_len).sum(2).clamp_min(1)  # [B, 1, 1]
    mean = p.sum(2) / n  # [B, H, K]
    if pool > 1:
        mean = torch.nn.functional.avg_pool1d(mean, pool, stride=1, padding=pool // 2, count_include_pad=True)
    out = _group_mean(mean, call)
    out[..., call.k_len - (call.q_len - q0):] = INF
    return out


def h2o(call: AttnCall, block_size: int = 256) -> torch.Tensor:
    """Attention each key received, summed over query blocks and divided by how many real
    queries see it: [B, H_kv, K]. Each block computes only its visible key range
    (`core.scores.key_range`); memory B*H*block_size*K, never the n x n map."""
    total = torch.zeros(call.batch, call.num_heads, call.k_len, device=call.device)
    seen = torch.zeros(call.batch, 1, call.k_len, device=call.device)
    for q0 in range(0, call.q_len, block_size):
        q1 = min(call.q_len, q0 + block_size)
        lo, hi = sc.key_range(call, q0, q1)
        total[..., lo:hi] += _probs(call, q0, q1, lo, hi).sum(2)
        vis = sc.visible(call, q0, q1, lo, hi).float() * _real_queries(call, q0, q1)  # [B|1, 1|H, q, k]
        seen[..., lo:hi] += vis.sum(2).amax(1, keepdim=True)
    return _group_mean(total / seen.clamp_min(1), call)


def tova(call: AttnCall, heads: str = "group") -> torch.Tensor:
    """Attention of the last query on each key: [B, H_kv, K]. heads="group": per key head (the
    mean over its query heads); heads="all": the mean over every query head, the same scores
    for every key head (kvpress's TOVAPress)."""
    return _group_mean(_probs(call, call.q_len - 1, call.q_len)[:, :, 0], call, heads)


def knorm(call: AttnCall) -> torch.Tensor:
    """Minus each key's L2 norm: [B, H_kv, K]."""
    return -call.key.float().norm(dim=-1)


def random(call: AttnCall, seed: int = 0) -> torch.Tensor:
    """Uniform scores drawn per row for its real tokens only (a padded row draws what it draws alone)."""
    out = torch.zeros(call.batch, call.num_kv_heads, call.k_len)
    for b, first in enumerate(first_real(call).tolist()):
        g = torch.Generator().manual_seed(seed * 100003 + call.layer)
        out[b, :, first:] = torch.rand(call.num_kv_heads, call.k_len - first, generator=g)
    return out.to(call.device)


CHOICES = {"tova": {"heads": ("group", "all")}}  # parameters with a fixed set of values (checked by parse)

SCORERS = {"streaming": streaming, "snapkv": snapkv, "h2o": h2o, "tova": tova, "knorm": knorm, "random": random}
