"""Block top-k sparse attention, training-free (MoBA / Quest / SeerAttention without training).

Keys are cut into blocks of `block_size`. Every query scores each key block it may see by
the product of ITS OWN query and the block's mean key (scaled like attention), and keeps
the `topk` best blocks plus the `sink` first (real) blocks and the `local` blocks ending
at its own position. Inside the kept blocks attention is exact and causal (the shared
executor in `blocks.py`, which gathers per query block the union of its queries' blocks
and masks each query to its own).

Causal by construction (pool="query", the default): a query's choice uses only its own
query vector and keys it may already see (its own block is pooled over the keys up to
it, `per_query.query_scores`), so no output depends on a later token, and a decode step
(one query on the cache) chooses exactly what the same query chose inside the prefill:
prefill + decode equals one prefill. The cost is a few more gathered blocks per query
block (the union of per-query choices).

pool="mean" is the papers' variant (MoBA, Quest-style prefill): one choice per query
block from the MEAN query of the block. Later queries of the block then change what the
earlier ones attend to, so outputs LEAK information from later tokens (the conformance
tests assert it does); perplexity measured on such a prefill is not a causal LM's. Its
decode steps choose from the single query (Quest), so they differ from its prefill.

per_head=False (default) lets a GQA group share its selection (scores: softmax per head,
averaged over the group), so keys are gathered once per key/value head and the matmuls
are G times taller; per_head=True selects per query head (MoBA's choice).
Budget per query ~ (sink + local + topk) * block_size keys; topk >= the number of blocks
gives dense attention. On a sliding-window layer whose window the topk + local blocks
already cover (Gemma3: 512 <= (16 + 2 - 2) x 64) every visible block is kept, so the layer runs as
exact `blocks.band` attention (density 1.0). Inputs shorter than `min_len` keys run dense
(density 1.0); the default 0 never falls back.

Left padding: each row's block grid starts at its first real key (`align.aligned`), so a
padded row chooses and computes exactly what the same sequence run alone does, and no
budget goes to blocks the mask hides.
"""

from __future__ import annotations

import torch

from ..core.call import AttnCall, KernelOutput
from ..core.hooks import Hooks
from . import blocks as bk
from .align import aligned
from . import per_query as pq


POOLS = ("query", "mean")


def select_per_query(call: AttnCall, g: bk.Grid, topk: int, sink: int, local: int, per_head: bool) -> torch.Tensor:
    """Chosen key blocks per QUERY (pool="query"): bool [B, H or H_kv, Q, nk]."""
    cand = pq.query_candidates(call, g)  # [B, 1, Q, nk]
    scores = pq.query_scores(call, g).masked_fill(~cand, -torch.inf)  # [B, H, Q, nk]
    if not per_head:
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        scores = probs.view(call.batch, call.num_kv_heads, call.groups, call.q_len, g.nk).mean(2)  # [B, H_kv, Q, nk]
        scores = scores.masked_fill(~cand, -torch.inf)
    forced = pq.query_forced(call, g, sink, local) & cand
    chosen = forced.expand_as(scores).clone()
    k = min(g.nk, topk)
    if k:
        values, index = scores.masked_fill(forced, -torch.inf).topk(k, dim=-1)
        chosen |= torch.zeros_like(chosen).scatter(-1, index, values > -torch.inf)
    return chosen


def select(call: AttnCall, g: bk.Grid, topk: int, sink: int, local: int, per_head: bool) -> torch.Tensor:
    """Chosen key blocks per query block from its MEAN query (pool="mean", leaky): bool [B, H or H_kv, nq, nk]."""
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
            per_head: bool = False, min_len: int = 0, pool: str = "query") -> KernelOutput:
    """Block top-k attention; output [B, Q, H, Dv], density = computed / visible pairs.

    pool: "query" (each query chooses for itself: causal) or "mean" (the papers' mean query
    per query block: leaks later tokens into earlier outputs)."""
    if topk < 0 or sink < 0 or local < 1:
        raise ValueError(f"block_topk: need topk >= 0, sink >= 0, local >= 1; got {topk}, {sink}, {local}")
    if pool not in POOLS:
        raise ValueError(f"block_topk: pool must be one of {', '.join(POOLS)}; got {pool!r}")
    bk.check_supported(call, "block_topk")
    if call.k_len < min_len:
        return bk.dense(call, hooks)
    # a query block's window spans at most window / block_size + 2 key blocks: all kept anyway
    if bk.covers_window(call, (topk + local - 2) * block_size):
        return bk.band(call)
    def run(call: AttnCall, g: bk.Grid) -> KernelOutput:  # each row's grid on its first real key
        if pool == "mean":
            return bk.attend(call, select(call, g, topk, sink, local, per_head), block_size)
        chosen = select_per_query(call, g, topk, sink, local, per_head)  # [B, Hs, Q, nk]
        return bk.attend(call, None, block_size, per_query=chosen)

    return aligned(call, block_size, run)
