"""THE attention scores of a call: which keys a block of queries may see, and their logits.

Every kernel, the statistics kernel and the explain capture build scores here, so a score
term (mask, bias, position bias, softcap, sink logits, sliding window) is applied in one
place. For queries i in [q0, q1) and keys j in [k0, k1):

    s_ij = scaling * q_i . k_j                          (GQA: key head = query head // G)
    s_ij = softcap * tanh(s_ij / softcap)               if the call has a softcap
    s_ij = s_ij + bias_ij + position_bias_ij            the additive terms the model passed
    s_ij = finfo.min                                    where `visible` is False (as eager:
                                                        a fully masked row stays finite)
    p_ij = exp(s_ij) / (sum_j exp(s_ij) + exp(sink_h))  the sink column only with `sinks`
"""

from __future__ import annotations

import math

import torch

from .call import AttnCall


def visible(call: AttnCall, q0: int = 0, q1: int | None = None, k0: int = 0, k1: int | None = None) -> torch.Tensor:
    """Which keys [k0, k1) the queries [q0, q1) may see: bool [B|1, 1|H, q, k].

    The model's mask when it passed one (it already holds causality, windows and padding);
    otherwise the position rules of a self-attention call (causal, sliding window);
    cross-attention and non-causal calls without a mask see every key.
    """
    q1 = call.q_len if q1 is None else q1
    k1 = call.k_len if k1 is None else k1
    if call.mask is not None:
        return call.mask[:, :, q0:q1, k0:k1]
    if not call.positional or (not call.causal and call.sliding_window is None):
        return torch.ones(1, 1, q1 - q0, k1 - k0, dtype=torch.bool, device=call.device)
    delta = call.q_positions(q0, q1)[:, None] - call.k_positions(k0, k1)[None, :]  # [q, k] query - key position
    seen = delta >= 0 if call.causal else torch.ones_like(delta, dtype=torch.bool)
    if call.sliding_window is not None:
        seen &= delta.abs() < call.sliding_window
    return seen[None, None]


def visible_at(call: AttnCall, rows: torch.Tensor, q_idx: torch.Tensor, k_idx: torch.Tensor) -> torch.Tensor:
    """`visible` at arbitrary (batch row, query index, key index) triples, broadcast together:
    bool of their broadcast shape. For kernels that gather keys (the sparse executor).

    Indices must lie in range (callers mark out-of-range slots themselves). A mask must be
    shared by all heads (mask.shape[1] == 1).
    """
    if call.mask is not None:
        m = call.mask[:, 0]  # [B|1, Q, K]
        rows = rows if m.shape[0] > 1 else torch.zeros_like(rows)
        return m[rows, q_idx, k_idx]
    shape = torch.broadcast_shapes(rows.shape, q_idx.shape, k_idx.shape)
    if not call.positional or (not call.causal and call.sliding_window is None):
        return torch.ones(shape, dtype=torch.bool, device=call.device)
    delta = (q_idx + call.q_start) - (k_idx + call.k_start)  # query position - key position
    seen = delta >= 0 if call.causal else torch.ones_like(delta, dtype=torch.bool)
    if call.sliding_window is not None:
        seen = seen & (delta.abs() < call.sliding_window)
    return seen.expand(shape)


def first_seen_key(call: AttnCall) -> torch.Tensor:
    """Index of each batch row's first key that some query of the call may see (the first
    real token after left padding; for cross-attention the first real encoder token): long [B]."""
    if call.mask is None:
        return torch.zeros(call.batch, dtype=torch.long, device=call.device)
    seen = call.mask.any(dim=2).any(dim=1)  # [B|1, K]
    return seen.to(torch.int8).argmax(-1).expand(call.batch)


def key_range(call: AttnCall, q0: int, q1: int) -> tuple[int, int]:
    """The smallest key range [lo, hi) holding every key a query of [q0, q1) may see.

    For self-attention it also holds each query's own key (the i == j terms of the
    statistics). Outside it every probability is exactly 0, except for fully masked
    padding rows, which statistics skip anyway.
    """
    if call.mask is None:
        if not call.positional or not call.causal:
            return 0, call.k_len
        hi = min(call.k_len, call.q_offset + q1)
        lo = 0 if call.sliding_window is None else max(0, call.q_offset + q0 - call.sliding_window + 1)
        return lo, hi
    cols = visible(call, q0, q1).reshape(-1, call.k_len).any(dim=0).nonzero()
    if cols.numel() == 0:
        return 0, call.k_len
    lo, hi = int(cols[0]), int(cols[-1]) + 1
    if call.positional:
        lo, hi = min(lo, max(0, q0 + call.q_offset)), max(hi, min(call.k_len, q1 + call.q_offset))
    return lo, hi


def _matmul_into(query: torch.Tensor, keys: torch.Tensor, out: torch.Tensor) -> None:
    """out [B, H_kv, M, k] = query [B, H_kv, M, D] @ keys [B, H_kv, D, k], one mm per (row, head):
    MKL splits each product over every thread, where a batched product of 3 heads on 2
    threads leaves one thread a third idle (measured on SmolLM2)."""
    for bi in range(query.shape[0]):
        for hk in range(query.shape[1]):
            torch.mm(query[bi, hk], keys[bi, hk], out=out[bi, hk])


def logits(call: AttnCall, q0: int = 0, q1: int | None = None, k0: int = 0, k1: int | None = None,
           out: torch.Tensor | None = None, mask: bool = True) -> torch.Tensor:
    """Masked, scaled, soft-capped, biased fp32 logits of queries [q0, q1) on keys [k0, k1): [B, H, q, k].

    GQA is served without repeating keys (the G query heads of a key/value head are
    stacked along the query axis of one product). out: optional fp32 buffer of at least
    B*H*q*k elements to write into (the statistics kernel reuses one); with it the
    arithmetic runs in place (no autograd), without it out of place (gradients flow).
    mask=False leaves the masking to the caller (only for `causal_only` calls, whose
    future keys the statistics kernel's native softmax masks itself).
    """
    q1 = call.q_len if q1 is None else q1
    k1 = call.k_len if k1 is None else k1
    b, h_kv, g, q, k = call.batch, call.num_kv_heads, call.groups, q1 - q0, k1 - k0
    query = call.query[:, :, q0:q1].reshape(b, h_kv, g * q, -1)  # [B, H_kv, G*q, D]
    keys = call.key[:, :, k0:k1].transpose(-1, -2)  # [B, H_kv, D, k]
    # a power-of-two scaling is exact, so it may go on the (small) queries instead of the logits
    early = out is not None and query.dtype == torch.float32 and math.frexp(call.scaling)[0] == 0.5
    if early:
        query = query * call.scaling
    if out is not None:
        scores = out[:b * h_kv * g * q * k].view(b, h_kv, g * q, k)
        if query.dtype == torch.float32 and query.device.type == "cpu":
            _matmul_into(query, keys, scores)
        else:
            scores.copy_(torch.matmul(query, keys))
        scores = scores.view(b, h_kv * g, q, k)
        if not early:
            scores.mul_(call.scaling)
        if call.softcap is not None:
            scores.div_(call.softcap).tanh_().mul_(call.softcap)
    else:
        scores = torch.matmul(query, keys).view(b, h_kv * g, q, k).float() * call.scaling
        if call.softcap is not None:
            scores = torch.tanh(scores / call.softcap) * call.softcap
    for term in (call.bias, call.position_bias):
        if term is not None:
            term = term[:, :, q0:q1, k0:k1].float()
            scores = scores.add_(term) if out is not None else scores + term
    if not mask:
        if not causal_only(call):
            raise ValueError("logits(mask=False) is only for causal calls without a mask or window")
        return scores
    return _mask(call, scores, q0, q1, k0, k1, in_place=out is not None)


def causal_only(call: AttnCall) -> bool:
    """Whether the only keys hidden from a query are its future ones (no mask tensor, no window)."""
    return call.mask is None and call.positional and call.causal and call.sliding_window is None


def _mask(call: AttnCall, scores: torch.Tensor, q0: int, q1: int, k0: int, k1: int, in_place: bool) -> torch.Tensor:
    """Set the logits of keys the queries may not see to the dtype's minimum."""
    if call.mask is None and (not call.positional or (not call.causal and call.sliding_window is None)):
        return scores  # every key is visible: nothing to mask
    low = torch.finfo(scores.dtype).min
    if in_place and causal_only(call):
        # only the square of keys [own, own + q) can lie in a query's future
        own, q = q0 + call.q_offset - k0, q1 - q0
        i = torch.arange(q, device=scores.device)
        lo, hi = max(own, 0), min(own + q, k1 - k0)
        if hi > lo:
            future = (torch.arange(lo, hi, device=scores.device)[None, :] - own) > i[:, None]  # [q, hi - lo]
            scores[..., lo:hi].masked_fill_(future, low)
        if own + q < k1 - k0:
            scores[..., max(own + q, 0):].fill_(low)
        return scores
    hidden = ~visible(call, q0, q1, k0, k1)
    return scores.masked_fill_(hidden, low) if in_place else scores.masked_fill(hidden, low)


def probs(call: AttnCall, scores: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Attention probabilities of logits [B, H, q, k] (fp32), with the call's sink column.

    With `sinks`, each head's softmax runs over [s_i1 .. s_ik, sink_h] and the sink's
    share is dropped (rows then sum to < 1), as gpt-oss's eager attention does.
    """
    if call.sinks is None:
        return torch.softmax(scores, dim=-1) if out is None else torch.softmax(scores, dim=-1, out=out)
    sink = call.sinks.float().view(1, -1, 1, 1).expand(*scores.shape[:3], 1)
    both = torch.cat([scores, sink], dim=-1)
    both = both - both.amax(-1, keepdim=True)
    p = torch.softmax(both, dim=-1)[..., :-1]
    return p if out is None else out.copy_(p)


def sink_logits(call: AttnCall) -> torch.Tensor | None:
    """The sink logit of every query head, [1, H, 1] fp32, or None."""
    return None if call.sinks is None else call.sinks.float().view(1, -1, 1)


def lse_from_top(scores: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """ln sum_j exp(s_ij) per query, [B, H, q]: max_j s_ij - ln max_j p_ij (p = softmax(s), no sinks)."""
    return scores.amax(-1) - p.amax(-1).log()


def merge(o1: torch.Tensor, l1: torch.Tensor, o2: torch.Tensor, l2: torch.Tensor):
    """Combine two partial softmax attentions over disjoint key sets by their log-sum-exps.

    o [..., Dv] outputs normalised over their own keys, l [...] their log-sum-exps.
    Returns the merged output and log-sum-exp.
    """
    lse = torch.logaddexp(l1, l2)
    w1 = torch.exp(l1 - lse).nan_to_num(0.0)[..., None].to(o1.dtype)
    w2 = torch.exp(l2 - lse).nan_to_num(0.0)[..., None].to(o2.dtype)
    return o1 * w1 + o2 * w2, lse
