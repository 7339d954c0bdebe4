"""Per-query block choices for the content-selecting sparse kernels, causal by construction.

A selection shared by a whole query block and made from its queries (their mean, its
last query) lets an earlier query's output depend on later tokens. Here every query
chooses its own key blocks from its own query vector and the keys it may already see;
`blocks.attend(..., per_query=...)` gathers per query block the union of its queries'
blocks and masks each query to its own. Shapes: Q queries, nk key blocks of `g.size`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.call import AttnCall
from .blocks import Grid, block_scores, first_keys, key_means, mask_blocks


def own_blocks(call: AttnCall, g: Grid) -> torch.Tensor:
    """Key block holding each query's own position: long [Q]."""
    return (g.q_offset + torch.arange(call.q_len, device=g.device)) // g.size


def query_scores(call: AttnCall, g: Grid) -> torch.Tensor:
    """Scaled logits of EVERY query on the mean key of each key block: [B, H, Q, nk] fp32.

    Causal calls use only keys the query may already see by position: blocks after its own
    get -inf, and its own block is pooled over the keys up to the query (a prefix mean).
    A decode step (whose last key block ends at the query) therefore scores exactly what
    the same query scored inside a prefill, and no score depends on a later token.
    Memory: B*H*Q*nk floats (8k tokens, 9 heads, 64-key blocks: 38 MB).
    """
    b, h, q_len, d = call.query.shape
    scores = block_scores(call, g, call.query.float(), key_means(call, g))  # [B, H, Q, nk]
    if not (call.positional and call.causal):
        return scores
    own = own_blocks(call, g)  # [Q]
    pos = (g.q_offset + torch.arange(q_len, device=g.device)).clamp(max=call.k_len - 1)  # [Q] key index
    csum = F.pad(torch.cumsum(call.key.float(), dim=2), (0, 0, 1, 0))  # [B, H_kv, K + 1, D], csum[j] = sum of keys < j
    first = own * g.size
    prefix = (csum[:, :, pos + 1] - csum[:, :, first]) / (pos + 1 - first)[:, None].float()  # [B, H_kv, Q, D]
    q = call.query.float().reshape(b, call.num_kv_heads, call.groups, q_len, d)
    own_score = (q * prefix[:, :, None]).sum(-1).view(b, h, q_len, 1) * call.scaling  # [B, H, Q, 1]
    scores = scores.scatter(-1, own.view(1, 1, q_len, 1).expand(b, h, q_len, 1), own_score)
    later = torch.arange(g.nk, device=g.device)[None, :] > own[:, None]  # [Q, nk]
    return scores.masked_fill(later, -torch.inf)


def query_candidates(call: AttnCall, g: Grid) -> torch.Tensor:
    """Key blocks each query may see by position, that are not all left padding and that hold a
    key the mask shows the query (a fully masked block is never chosen): bool [B, 1, Q, nk]."""
    own = own_blocks(call, g)[:, None]  # [Q, 1]
    blk = torch.arange(g.nk, device=g.device)[None, :]  # [1, nk]
    ok = torch.ones(call.q_len, g.nk, dtype=torch.bool, device=g.device)
    if call.causal:
        ok &= blk <= own
        if call.sliding_window is not None:
            pos = g.q_offset + torch.arange(call.q_len, device=g.device)[:, None]
            ok &= blk * g.size + g.size - 1 > pos - call.sliding_window
    real = (torch.arange(g.nk, device=g.device) * g.size + g.size - 1)[None, :] >= first_keys(call)[:, None]  # [B, nk]
    cand = (ok[None] & real[:, None, :])[:, None]
    shown = mask_blocks(call, g, per_query=True)
    return cand if shown is None else cand & shown


def query_forced(call: AttnCall, g: Grid, sink: int, local: int) -> torch.Tensor:
    """The first `sink` real key blocks and the `local` blocks ending at each query's own
    block: bool [B, 1, Q, nk]."""
    blk = torch.arange(g.nk, device=g.device)  # [nk]
    first_blk = (first_keys(call) // g.size)[:, None]  # [B, 1]
    sinks = (blk[None, :] >= first_blk) & (blk[None, :] < first_blk + sink)  # [B, nk]
    own = own_blocks(call, g)[:, None]  # [Q, 1]
    near = (blk[None, :] <= own) & (blk[None, :] > own - local)  # [Q, nk]
    return (sinks[:, None, :] | near[None])[:, None]
