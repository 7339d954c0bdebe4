"""Neighborhood / strided / blocked attention as one kernel (Generalized Neighborhood
Attention, Hassani et al. 2025), in 1-D over token positions.

Queries are grouped in runs of `stride` consecutive positions; a group shares one window
of `window` keys. Causal models: the window ends at the group's last position, so query
q sees keys k with  leader(q) - window < k <= q,  leader(q) = (q // stride + 1) * stride - 1.
  stride=1            neighborhood = sliding window (each query its own window)
  1 < stride < window strided neighborhood (GNA): fewer distinct windows, denser blocks
  stride=window       blocked attention: non-overlapping causal blocks
Non-causal models (encoders): the window of `window` keys is centred on the group's middle
and shifted inside the row's real keys at the edges (neighborhood attention's rule).
Positions count from each row's first real token, so left padding does not move groups.

Budget per query <= window keys; window >= K + stride gives dense attention. Decode /
extend steps use the same rule for the new queries. Inputs shorter than `min_len` keys
run dense (density 1.0); the default 0 never falls back.
"""

from __future__ import annotations

import torch

from ..core.call import AttnCall, KernelOutput
from ..core.hooks import Hooks
from . import blocks as bk


def key_range(call: AttnCall, q_rel: torch.Tensor, window: int, stride: int,
              length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last key (relative positions) the window of each query allows: like q_rel.

    length: real keys of each query's row (K minus its left padding), broadcastable to
    q_rel; a non-causal window is shifted inside [0, length)."""
    group = torch.div(q_rel, stride, rounding_mode="floor") * stride
    if call.causal:
        return group + stride - window, q_rel
    lo = torch.minimum(group + stride // 2 - window // 2, (length - window).clamp(min=0)).clamp(min=0)
    return lo, lo + window - 1


def pattern(call: AttnCall, g: bk.Grid, window: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Key blocks some query of each block needs, and those the rule may cut: bool [B, 1, nq, nk] twice."""
    start = bk.first_keys(call)[:, None, None]  # [B, 1, 1]
    lo, hi = key_range(call, g.q_positions()[None] - start, window, stride, call.k_len - start)  # [B, nq, size]
    lo, hi = lo + start, hi + start
    k_first = (torch.arange(g.nk, device=g.device) * g.size)[None, None, :]  # [1, 1, nk]
    k_last = k_first + g.size - 1
    blocks = (k_last >= lo.amin(-1, keepdim=True)) & (k_first <= hi.amax(-1, keepdim=True))  # [B, nq, nk]
    inside = (k_first >= lo.amax(-1, keepdim=True)) & (k_last <= hi.amin(-1, keepdim=True))
    return blocks[:, None], ~inside[:, None]


def forward(call: AttnCall, hooks: Hooks, window: int = 1024, stride: int = 1, block_size: int = 64,
            min_len: int = 0) -> KernelOutput:
    """Neighborhood-family attention; output [B, Q, H, Dv], density = computed / visible pairs."""
    if window < 1 or not 1 <= stride <= window:
        raise ValueError(f"window: need window >= 1 and 1 <= stride <= window, got window={window}, stride={stride}")
    bk.check_supported(call, "window")
    if call.k_len < min_len:
        return bk.dense(call, hooks)
    start = bk.first_keys(call)  # [B]

    def rule(delta, kpos, row):  # [N, size, S], [N, 1, S], [N, 1, 1]
        k_rel = kpos - start[row].int()
        lo, hi = key_range(call, delta + k_rel, window, stride, call.k_len - start[row].int())
        return (k_rel >= lo) & (k_rel <= hi) if not call.causal else k_rel >= lo

    g = bk.grid(call, block_size)
    blocks, partial = pattern(call, g, window, stride)
    return bk.attend(call, blocks, block_size, rule, partial)
