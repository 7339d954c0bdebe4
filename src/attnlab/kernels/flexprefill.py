"""FlexPrefill (Lai et al., 2025): key blocks chosen so that their estimated attention mass
reaches `gamma`, adaptively per query and head.

estimate="query" (default, causal): every query estimates its own attention over the key
blocks it may see from ITS OWN query and the blocks' mean keys (softmax of the scaled
products; its own block pooled over the keys up to it, `per_query.query_scores`) and keeps
the fewest blocks reaching gamma of that mass: FlexPrefill's query-aware pattern, made per
query instead of per query block. The first (sink) real block and the query's own block
are always kept; inside kept blocks attention is exact and causal (`blocks.py`). No output
depends on a later token, and a decode step (one query on the cache) chooses exactly what
the same query chose inside the prefill, so decode steps run the same rule.
The vertical-slash pattern and the per-head choice between the two need the EXACT
attention of a sample of queries; a sample that serves every query causally would be
every query (the dense cost), so this estimate does not use them (`tau` is unused).

estimate="last_block" is the paper's: for every head the last query block's attention to
all keys is computed exactly (a_hat [B, H, n, K], n = block_size), its block sums compared
with the estimate from pooled (block-mean) queries by the Jensen-Shannon distance
sqrt(JS); below `tau` the head gets the QUERY-AWARE pattern (per query block: pooled
scores, softmax, the fewest blocks reaching gamma), otherwise a VERTICAL-SLASH pattern
from a_hat (the fewest key columns and diagonal offsets reaching gamma, as key blocks).
Both the last block and the pooled queries come from LATER tokens, so outputs LEAK
information from the future (the conformance tests assert it does); its decode steps run
dense (with one query the estimate would cost as much as the attention itself).

gamma >= 1 keeps everything (dense). per_head=False takes the union over each GQA group
(keys gathered once per key/value head). Inputs shorter than `min_len` keys run dense
(density 1.0); the default 0 never falls back.

Left padding (estimate="query"): each row's block grid starts at its first real key
(`align.aligned`), so a padded row chooses and computes exactly what the same sequence
run alone does. estimate="last_block" keeps the grid on key indices (its estimate needs
the call's last queries in place; it is leaky and not batch independent anyway).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import scores as sc
from ..core.call import AttnCall, KernelOutput
from ..core.hooks import Hooks
from . import blocks as bk
from .align import aligned
from . import per_query as pq


def estimate(call: AttnCall, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact attention of the last n queries: probs [B, H, n, K] fp32 and visibility [B|1, 1, n, K]."""
    n = min(n, call.q_len)
    visible = call.visible(call.q_len - n, call.q_len)
    scores = sc.logits(call, call.q_len - n, call.q_len).masked_fill(~visible, -torch.inf)  # [B, H, n, K]
    return torch.softmax(scores, dim=-1).nan_to_num(0.0), visible


def _block_sum(x: torch.Tensor, g: bk.Grid) -> torch.Tensor:
    """Sum over each key block of the last dim: [..., K] -> [..., nk]."""
    x = F.pad(x, (0, g.nk * g.size - x.shape[-1]))
    return x.view(*x.shape[:-1], g.nk, g.size).sum(-1)


def js_distance(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """sqrt of the Jensen-Shannon divergence (nats) of distributions on the last dim."""
    m = (p + q) / 2
    js = 0.5 * (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(-1) + 0.5 * (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(-1)
    return js.clamp(min=0).sqrt()


def query_aware(call: AttnCall, g: bk.Grid, gamma: float, cand: torch.Tensor) -> torch.Tensor:
    """Per query block, the fewest key blocks whose pooled-estimate mass reaches gamma: [B, H, nq, nk]."""
    qpool, kpool = bk.pooled(call, g)
    probs = torch.softmax(bk.block_scores(call, g, qpool, kpool).masked_fill(~cand, -torch.inf), -1)
    return bk.keep_mass(probs.nan_to_num(0.0), gamma)


def vertical_slash(call: AttnCall, g: bk.Grid, gamma: float, probs: torch.Tensor) -> torch.Tensor:
    """Key blocks holding the fewest columns + diagonals with mass gamma in `probs` [B, H, n, K]: [B, H, nq, nk]."""
    n, k = probs.shape[2], probs.shape[3]
    vertical = probs.mean(2)  # [B, H, K] mass per key column
    qpos = call.q_offset + call.q_len - n + torch.arange(n, device=call.device)  # [n] positions of the estimated queries
    kidx = qpos[:, None] - torch.arange(k, device=call.device)[None, :]  # [n, K] key at offset o for each query
    diag = probs.gather(-1, kidx.clamp(min=0).expand(*probs.shape[:2], n, k)) * (kidx >= 0)
    slash = diag.mean(2)  # [B, H, K] mass per offset q - k
    keep = bk.keep_mass(torch.cat([vertical, slash], -1) / 2, gamma)
    columns = _block_sum(keep[..., :k].float(), g) > 0  # [B, H, nk]
    offsets = keep[..., k:]  # [B, H, K]
    o = torch.arange(k, device=call.device)
    diffs = torch.zeros(*offsets.shape[:2], g.nk + 1, dtype=torch.bool, device=call.device)  # block diagonals j - i covered
    diffs[..., :-1] |= _block_sum(offsets.float(), g) > 0  # offset o covers block diagonal o // size
    diffs[..., 1:] |= _block_sum((offsets & (o % g.size != 0)).float(), g) > 0  # ... and o // size + 1
    j = torch.arange(g.nq, device=call.device)[:, None]
    i = torch.arange(g.nk, device=call.device)[None, :]
    band = diffs[..., (j - i).clamp(min=0, max=g.nk)]  # [B, H, nq, nk]
    return band | columns[:, :, None, :]


ESTIMATES = ("query", "last_block")


def select_per_query(call: AttnCall, g: bk.Grid, gamma: float, per_head: bool) -> torch.Tensor:
    """Chosen key blocks per QUERY (estimate="query"): bool [B, H (or H_kv), Q, nk]."""
    cand = pq.query_candidates(call, g)  # [B, 1, Q, nk]
    probs = torch.softmax(pq.query_scores(call, g).masked_fill(~cand, -torch.inf), -1).nan_to_num(0.0)  # [B, H, Q, nk]
    chosen = (bk.keep_mass(probs, gamma) | pq.query_forced(call, g, sink=1, local=1)) & cand
    if not per_head:
        chosen = chosen.view(call.batch, call.num_kv_heads, call.groups, call.q_len, g.nk).any(2)
    return chosen


def select(call: AttnCall, g: bk.Grid, gamma: float, tau: float, per_head: bool):
    """The paper's selection (estimate="last_block", leaky): chosen key blocks bool
    [B, H (or H_kv), nq, nk] and which heads were query-aware bool [B, H]."""
    cand = bk.candidates(call, g)  # [B, 1, nq, nk]
    probs, visible = estimate(call, g.size)
    true = _block_sum(probs, g).mean(2)  # [B, H, nk]
    last_q = call.query[:, :, -probs.shape[2]:].float().mean(2, keepdim=True)  # [B, H, 1, D]
    seen = _block_sum(visible.float(), g).sum(2) > 0  # [B|1, 1, nk]
    _, kpool = bk.pooled(call, g)
    est = torch.softmax(bk.block_scores(call, g, last_q, kpool)[:, :, 0].masked_fill(~seen, -torch.inf), -1)
    aware = js_distance(true, est.nan_to_num(0.0)) < tau  # [B, H]
    chosen = torch.where(aware[..., None, None], query_aware(call, g, gamma, cand),
                         vertical_slash(call, g, gamma, probs))
    chosen = (chosen | bk.forced(call, g, sink=1, local=1)) & cand
    if not per_head:
        chosen = chosen.view(call.batch, call.num_kv_heads, call.groups, g.nq, g.nk).any(2)
    return chosen, aware


def forward(call: AttnCall, hooks: Hooks, gamma: float = 0.9, tau: float = 0.1, block_size: int = 64,
            per_head: bool = True, min_len: int = 0, estimate: str = "query") -> KernelOutput:
    """FlexPrefill attention; output [B, Q, H, Dv], density = computed / visible pairs.

    estimate: "query" (each query estimates for itself: causal) or "last_block" (the
    paper's, from the last query block and pooled queries: leaks later tokens)."""
    if not 0.0 < gamma or tau < 0.0:
        raise ValueError(f"flexprefill: need gamma > 0 and tau >= 0, got gamma={gamma}, tau={tau}")
    if estimate not in ESTIMATES:
        raise ValueError(f"flexprefill: estimate must be one of {', '.join(ESTIMATES)}; got {estimate!r}")
    bk.check_supported(call, "flexprefill")
    if call.k_len < min_len or (estimate == "last_block" and call.q_offset > 0):
        return bk.dense(call, hooks)
    if estimate == "query":  # each row's grid on its first real key
        return aligned(call, block_size, lambda c, g: bk.attend(
            c, None, block_size, per_query=select_per_query(c, g, gamma, per_head)))
    g = bk.grid(call, block_size)
    chosen, _ = select(call, g, gamma, tau, per_head)
    return bk.attend(call, chosen, block_size)
