"""StreamingLLM: every query sees the first `sinks` tokens and the last `window` tokens.

Pattern (absolute key positions, `start` = a row's first real token after left padding):
key k is computed for query q iff  k - start < sinks  or  q - k < window,  intersected
with what the model lets q see (causal, padding, the layer's own sliding window).
`sinks=0` is plain sliding-window attention. Non-causal (encoder) calls get the symmetric
window |q - k| < window. Budget per query: sinks + window keys, so
a window >= the sequence length gives exactly dense attention.

Decode / extend steps (queries on a KV cache) use the same rule for the new queries, so
generation after a streaming prefill keeps attending to sinks + window.
Inputs shorter than `min_len` keys run dense (sdpa) — an explicit choice, reported as
density 1.0; the default 0 never falls back.
"""

from __future__ import annotations

import torch

from ..call import AttnCall, KernelOutput
from ..hooks import Hooks
from . import blocks as bk


def pattern(call: AttnCall, g: bk.Grid, sinks: int, window: int) -> torch.Tensor:
    """Key blocks holding a sink or a window key of some query of each block: bool [B, 1, nq, nk]."""
    start = bk.first_keys(call)  # [B]
    key_lo = torch.arange(g.nk) * g.size  # [nk] first key of each block
    key_hi = key_lo + g.size - 1
    sink = (key_lo[None, :] < (start + sinks)[:, None]) & (key_hi[None, :] >= start[:, None])  # [B, nk]
    qpos = g.q_positions()  # [nq, size]
    lo, hi = qpos[:, :1] - window + 1, qpos[:, -1:]  # [nq, 1] window of the block's queries
    if not call.causal:
        hi = hi + window - 1
    near = (key_hi[None, :] >= lo) & (key_lo[None, :] <= hi)  # [nq, nk]
    return (sink[:, None, :] | near[None, :, :])[:, None]


def forward(call: AttnCall, hooks: Hooks, sinks: int = 4, window: int = 1020, block_size: int = 64,
            min_len: int = 0) -> KernelOutput:
    """Sinks + sliding-window attention; output [B, Q, H, Dv], density = computed / visible pairs."""
    if sinks < 0 or window < 1:
        raise ValueError(f"streaming: need sinks >= 0 and window >= 1, got sinks={sinks}, window={window}")
    bk.check_supported(call, "streaming")
    if call.k_len < min_len:
        return bk.dense(call, hooks)
    start = bk.first_keys(call).view(-1, 1, 1, 1, 1)  # [B, 1, 1, 1, 1]

    def rule(qpos, kpos):  # qpos [c, size, 1], kpos [B, Hs, c, 1, S]
        near = (qpos - kpos < window) & ((kpos - qpos < window) | call.causal)
        return (kpos - start < sinks) | near

    g = bk.grid(call, block_size)
    return bk.attend(call, pattern(call, g, sinks, window), block_size, rule)
