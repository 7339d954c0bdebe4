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

from ..core.call import AttnCall, KernelOutput
from ..core.hooks import Hooks
from . import blocks as bk


def pattern(call: AttnCall, g: bk.Grid, sinks: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Key blocks holding a sink or window key of some query of each block, and those of
    them the rule may cut inside: bool [B, 1, nq, nk] twice."""
    start = bk.first_keys(call)[:, None]  # [B, 1]
    k_first = torch.arange(g.nk, device=g.device)[None, :] * g.size  # [1, nk]
    k_last = k_first + g.size - 1
    sink = (k_first < start + sinks) & (k_last >= start)  # [B, nk]
    all_sink = (k_first >= start) & (k_last < start + sinks)
    qpos = g.q_positions()  # [nq, size]
    q_first, q_last = qpos[:, :1], qpos[:, -1:]  # [nq, 1]
    near = (k_last >= q_first - window + 1) & (k_first <= (q_last if call.causal else q_last + window - 1))
    all_near = q_last - k_first < window
    if not call.causal:
        all_near = all_near & (k_last - q_first < window)
    blocks = sink[:, None, :] | near[None]  # [B, nq, nk]
    partial = ~(all_sink[:, None, :] | all_near[None])
    return blocks[:, None], partial[:, None]


def forward(call: AttnCall, hooks: Hooks, sinks: int = 4, window: int = 1020, block_size: int = 64,
            min_len: int = 0) -> KernelOutput:
    """Sinks + sliding-window attention; output [B, Q, H, Dv], density = computed / visible pairs."""
    if sinks < 0 or window < 1:
        raise ValueError(f"streaming: need sinks >= 0 and window >= 1, got sinks={sinks}, window={window}")
    bk.check_supported(call, "streaming")
    if call.k_len < min_len:
        return bk.dense(call, hooks)
    start = bk.first_keys(call)  # [B]

    def rule(delta, kpos, row):  # [N, size, S], [N, 1, S], [N, 1, 1]
        near = delta < window if call.causal else delta.abs() < window
        return near | (kpos - start[row] < sinks)

    g = bk.grid(call, block_size)
    blocks, partial = pattern(call, g, sinks, window)
    return bk.attend(call, blocks, block_size, rule, partial)
