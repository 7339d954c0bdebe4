"""Block top-k sparse attention, training-free (MoBA / Quest / SeerAttention without training).

Queries and keys are cut into blocks of `block_size`. Each query block scores every key
block it may see by the product of its mean query and the key block's mean key (scaled
like attention), and keeps the `topk` best blocks plus the `sink` first blocks and the
`local` blocks ending at its own position (its diagonal block always). Inside the kept
blocks attention is exact and causal (the shared executor in `blocks.py`).

per_head=False (default) lets a GQA group share its selection (scores: softmax per head,
averaged over the group), so keys are gathered once per key/value head and the matmuls
are G times taller; per_head=True selects per query head (MoBA's choice).
Budget per query ~ (sink + local + topk) * block_size keys; topk >= the number of blocks
gives dense attention. On a sliding-window layer whose window the topk + local blocks
already cover (Gemma3: 512 <= (16 + 2 - 2) x 64) every visible block is kept, so the layer runs as
exact `blocks.band` attention (density 1.0). Decode / extend steps select for the new queries in the same way
(the single query is its own pooled query, as in Quest). Inputs shorter than `min_len`
keys run dense (density 1.0); the default 0 never falls back.
"""

from __future__ import annotations

import torch

from ..core.call import AttnCall, KernelOutput
from ..core.hooks import Hooks
from . import blocks as bk


def select(call: AttnCall, g: bk.Grid, topk: int, sink: int, local: int, per_head: bool) -> torch.Tensor:
    """Chosen key blocks per query block: bool [B, H or H_kv, nq, nk]."""
    qpool, kpool = bk.pooled(call, g)
    cand = bk.candidates(call, g)  # [B, 1, nq, nk]
    scores = bk.block_scores(call, g, qpool, kpool).masked_fill(~cand, -torch.inf)  # [B, H, nq, nk]
    if not per_head:
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        scores = probs.view(call.batch, call.num_kv_heads, call.groups, g.nq, g.nk).mean(2)  # [B, H_kv, nq, nk]
        scores = scores.masked_fill(~cand, -torch.inf)
    scores = scores.masked_fill(bk.forced(call, g, sink, local) & cand, torch.inf)
    straddle = int(g.q_offset % g.size != 0)  # with a cache a query block may span two key blocks
    k = min(g.nk, sink + local + topk + straddle)
    values, index = scores.topk(k, dim=-1)
    return torch.zeros_like(scores, dtype=torch.bool).scatter(-1, index, values > -torch.inf)


def forward(call: AttnCall, hooks: Hooks, topk: int = 16, sink: int = 1, local: int = 2, block_size: int = 64,
            per_head: bool = False, min_len: int = 0) -> KernelOutput:
    """Block top-k attention; output [B, Q, H, Dv], density = computed / visible pairs."""
    if topk < 0 or sink < 0 or local < 1:
        raise ValueError(f"block_topk: need topk >= 0, sink >= 0, local >= 1; got {topk}, {sink}, {local}")
    bk.check_supported(call, "block_topk")
    if call.k_len < min_len:
        return bk.dense(call, hooks)
    # a query block's window spans at most window / block_size + 2 key blocks: all kept anyway
    if bk.covers_window(call, (topk + local - 2) * block_size):
        return bk.band(call)
    g = bk.grid(call, block_size)
    return bk.attend(call, select(call, g, topk, sink, local, per_head), block_size)
