"""One step of the ring: exact attention of the local queries on ONE key/value block.

The keys of a block may sit anywhere in the sequence (another rank's shard), so the block
is described by global sequence indices, and which key a query may see is rebuilt from
them: key padding (`key_valid`), causality and the sliding window, exactly the rules the
model's own mask holds. Scores come from THE logits function, `core.scores.logits`, on a
sub-call whose mask is that visibility; GQA is served without repeating keys.

Queries and keys are cut into chunks (`block_size` x `key_block`); a chunk pair no query
may see is skipped (never computed), so a causal future or a far-away window costs
nothing. A step returns its output normalised over its own keys and the log-sum-exp of
its scores; `core.scores.merge` combines steps. A query that sees no key of a step gets
lse = -inf and output 0 for it (so a query that sees no key at all outputs 0; eager
outputs the mean of all values for such padding rows).
"""

from __future__ import annotations

import dataclasses

import torch

from ..core import scores as sc
from ..core.call import AttnCall


def visibility(call: AttnCall, q_idx: torch.Tensor, k_idx: torch.Tensor, k_valid: torch.Tensor) -> torch.Tensor:
    """bool [B, 1, q|1, k]: query at global index q_idx[i] may see key at k_idx[j] of row b."""
    seen = k_valid[:, None, None, :]  # [B, 1, 1, k]
    if call.causal or call.sliding_window is not None:
        delta = q_idx[:, None] - k_idx[None, :]  # [q, k] query index - key index
        rule = delta >= 0 if call.causal else torch.ones_like(delta, dtype=torch.bool)
        if call.sliding_window is not None:
            rule &= delta.abs() < call.sliding_window
        seen = seen & rule[None, None]
    return seen


def may_see(call: AttnCall, q_idx: torch.Tensor, k_idx: torch.Tensor) -> bool:
    """False when no query of q_idx can see any key of k_idx by position alone (cheap: min / max)."""
    if q_idx.numel() == 0 or k_idx.numel() == 0:
        return False
    q_lo, q_hi, k_lo, k_hi = int(q_idx.min()), int(q_idx.max()), int(k_idx.min()), int(k_idx.max())
    if call.causal and q_hi < k_lo:
        return False
    w = call.sliding_window
    if w is not None and (q_lo - k_hi >= w or (not call.causal and k_lo - q_hi >= w)):
        return False
    return True


def global_view(call: AttnCall, q_idx: torch.Tensor, k_idx: torch.Tensor, k_valid: torch.Tensor):
    """vis_of(q0, q1, k0, k1) for a block given by global indices: visibility, or None to skip."""
    def vis_of(q0, q1, k0, k1):
        if not may_see(call, q_idx[q0:q1], k_idx[k0:k1]):
            return None
        return visibility(call, q_idx[q0:q1], k_idx[k0:k1], k_valid[:, k0:k1])
    return vis_of


def local_view(call: AttnCall):
    """vis_of for a ring of one: the call's own visibility (mask or position rules, `core.scores`)."""
    def vis_of(q0, q1, k0, k1):
        lo, hi = sc.key_range(call, q0, q1)
        return call.visible(q0, q1, k0, k1) if k0 < hi and k1 > lo else None
    return vis_of


def chunks(n_q: int, n_k: int, block_size: int, key_block: int, vis_of):
    """Yield (q0, q1, k0, k1, visibility [B|1, 1|H, q|1, k]) for every chunk pair some query may see;
    visibility None when every query sees every key of the pair (no mask to apply)."""
    for q0 in range(0, n_q, block_size):
        q1 = min(n_q, q0 + block_size)
        for k0 in range(0, n_k, key_block):
            k1 = min(n_k, k0 + key_block)
            vis = vis_of(q0, q1, k0, k1)
            if vis is None or not bool(vis.any()):
                continue
            yield q0, q1, k0, k1, (None if bool(vis.all()) else vis)


def sub_call(call: AttnCall, query, key, vis, q0: int, q1: int, k0: int, k1: int) -> AttnCall:
    """The call restricted to queries [q0, q1) and keys [k0, k1), visibility given as its mask."""
    def cut(term):
        return None if term is None else term[:, :, q0:q1, k0:k1]
    return dataclasses.replace(call, query=query, key=key, value=key, mask=vis, bias=cut(call.bias),
                               position_bias=cut(call.position_bias), q_start=0, k_start=0, sliding_window=None,
                               causal=call.causal and vis is not None)


def attend(call: AttnCall, query, key, value, vis_of, sizes: tuple[int, int], tally=None):
    """Attention of `query` on one key/value block, normalised over that block's keys.

    query [B, H, Q, D], key [B, H_kv, K, D], value [B, H_kv, K, Dv]; vis_of from
    `global_view` / `local_view`; sizes (query chunk, key chunk). Returns (out [B, H, Q, Dv]
    fp32, lse [B, H, Q] fp32); tally: optional dict whose "pairs" counts visible
    query-key pairs computed (per batch row, summed).
    """
    b, h, h_kv, g, n_q = call.batch, call.num_heads, key.shape[1], call.num_heads // key.shape[1], query.shape[2]
    out = torch.zeros(b, h, n_q, value.shape[-1], device=query.device)
    lse = torch.full((b, h, n_q), -torch.inf, device=query.device)
    for q0, q1, k0, k1, vis in chunks(n_q, key.shape[2], *sizes, vis_of):
        s = sc.logits(sub_call(call, query[:, :, q0:q1], key[:, :, k0:k1], vis, q0, q1, k0, k1))  # [B, H, q, k]
        p = torch.softmax(s, -1)  # [B, H, q, k]
        part_lse = sc.lse_from_top(s, p)  # [B, H, q]
        if vis is not None:
            row = vis.any(-1)  # [B|1, 1|H, q|1] rows with a visible key
            part_lse = part_lse.masked_fill(~row, -torch.inf)
            p = p * row[..., None]
        pv = torch.matmul(p.view(b, h_kv, g * (q1 - q0), k1 - k0), value[:, :, k0:k1].float())
        o, l = sc.merge(out[:, :, q0:q1], lse[:, :, q0:q1], pv.view(b, h, q1 - q0, -1), part_lse)
        out[:, :, q0:q1], lse[:, :, q0:q1] = o, l
        if tally is not None:
            seen = b * (q1 - q0) * (k1 - k0) if vis is None else int(vis[:, 0].expand(b, q1 - q0, k1 - k0).sum())
            tally["pairs"] = tally.get("pairs", 0) + seen
    return out, lse


def grads(call: AttnCall, query, key, value, dout, lse, delta, vis_of, sizes: tuple[int, int]):
    """Gradients of the ring's output through ONE key/value block.

    dout [B, H, Q, Dv] fp32 gradient of the merged output, lse [B, H, Q] its (global)
    log-sum-exp, delta [B, H, Q] = sum(dout * out, -1). Probabilities are recomputed as
    exp(s - lse); dS = P * (dP - delta); dQ, dK follow from `core.scores.logits` by
    autograd (so scaling and softcap are differentiated where they are defined).
    Returns (dq [B, H, Q, D], dk [B, H_kv, K, D], dv [B, H_kv, K, Dv]), fp32.
    """
    b, h, h_kv, g = call.batch, call.num_heads, key.shape[1], call.num_heads // key.shape[1]
    dq = torch.zeros(query.shape, device=query.device)
    dk, dv = torch.zeros(key.shape, device=key.device), torch.zeros(value.shape, device=value.device)
    safe = torch.where(torch.isfinite(lse), lse, torch.inf)  # rows that saw nothing get p = 0
    for q0, q1, k0, k1, vis in chunks(query.shape[2], key.shape[2], *sizes, vis_of):
        qc = query[:, :, q0:q1].detach().requires_grad_()
        kc = key[:, :, k0:k1].detach().requires_grad_()
        with torch.enable_grad():
            s = sc.logits(sub_call(call, qc, kc, vis, q0, q1, k0, k1))  # [B, H, q, k]
        p = torch.exp(s.detach() - safe[:, :, q0:q1, None])  # [B, H, q, k]
        do = dout[:, :, q0:q1].reshape(b, h_kv, g * (q1 - q0), -1)  # [B, H_kv, G*q, Dv]
        p_kv = p.view(b, h_kv, g * (q1 - q0), k1 - k0)  # [B, H_kv, G*q, k]
        dv[:, :, k0:k1] += torch.matmul(p_kv.transpose(-1, -2), do)
        dp = torch.matmul(do, value[:, :, k0:k1].float().transpose(-1, -2)).view(b, h, q1 - q0, k1 - k0)
        ds = p * (dp - delta[:, :, q0:q1, None])
        gq, gk = torch.autograd.grad(s, (qc, kc), ds)
        dq[:, :, q0:q1] += gq
        dk[:, :, k0:k1] += gk
    return dq, dk, dv
