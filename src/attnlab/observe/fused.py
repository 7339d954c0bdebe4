"""The statistics pass's kernel: eager attention on the keys each query block can see.

`eager` computes every query block against all K keys, then masks: for a causal prefill
half of that work is for keys no query may see, and the observers get [B, H, q, K]
blocks that are half zeros. This kernel computes, per query block, only the key range
[lo, hi) the block may see (`stats.key_range`), masks inside it, and hands observers
that have `on_block` the trimmed probabilities and the logits:

    observer.on_block(call, q_start, probs [B, H, q, K'], k_start, scores [B, H, q, K'])

GQA is served without repeating keys: the G query heads of a key/value head are stacked
along the query axis of one matmul. Output equals `eager`'s up to float rounding (the
scaling is applied to the logits in place; the parity tests check outputs and
statistics). Calls it does not cover (modifiers, bias, decode/extend, observers without
`on_block`) go to `kernels.eager` unchanged.
"""

from __future__ import annotations

import torch

from ..call import AttnCall, KernelOutput
from ..hooks import Hooks
from .stats import key_range


def covers(call: AttnCall, hooks: Hooks) -> bool:
    """Whether this kernel serves `call` itself (else it defers to eager)."""
    observers = hooks.observers
    return (not hooks.modifiers and call.bias is None and call.phase == "prefill" and not call.output_attentions
            and bool(observers) and all(callable(getattr(o, "on_block", None)) for o in observers)
            and not (call.dropout and call.module is not None and call.module.training))


def _logits(call: AttnCall, q0: int, q1: int, lo: int, hi: int) -> torch.Tensor:
    """Masked, scaled fp32 logits of queries [q0, q1) against keys [lo, hi): [B, H, q, K']."""
    b, h_kv, g, q = call.batch, call.num_kv_heads, call.groups, q1 - q0
    query = call.query[:, :, q0:q1].reshape(b, h_kv, g * q, -1)  # [B, H_kv, G*q, D]
    scores = torch.matmul(query, call.key[:, :, lo:hi].transpose(-1, -2)).float()  # [B, H_kv, G*q, K']
    scores = scores.view(b, h_kv * g, q, hi - lo).mul_(call.scaling)
    if call.softcap is not None:
        scores = torch.tanh(scores.div_(call.softcap)).mul_(call.softcap)
    low = torch.finfo(scores.dtype).min
    if call.mask is None and call.causal and call.sliding_window is None:
        own = q0 + call.q_offset  # only the diagonal square [own, own + q) holds future keys
        i = torch.arange(q)
        scores[..., own - lo:own - lo + q].masked_fill_(i[None, :] > i[:, None], low)
    else:
        scores.masked_fill_(~call.visible(q0, q1)[..., lo:hi], low)
    return scores


def forward(call: AttnCall, hooks: Hooks, block_size: int | None = 256) -> KernelOutput:
    """Exact attention in query blocks of `block_size` (None = one block), each on its visible keys."""
    if block_size is not None and block_size < 1:
        raise ValueError(f"stats: block_size must be >= 1, got {block_size}")
    if not covers(call, hooks):
        from ..kernels import eager  # here, not at the top: the kernel registry imports this module

        return eager.forward(call, hooks, block_size=block_size)
    b, h_kv, g = call.batch, call.num_kv_heads, call.groups
    step = block_size or call.q_len
    outs = []
    for q0 in range(0, call.q_len, step):
        q1 = min(call.q_len, q0 + step)
        lo, hi = key_range(call, q0, q1)
        scores = _logits(call, q0, q1, lo, hi)  # [B, H, q, K']
        probs = torch.softmax(scores, dim=-1)
        for obs in hooks.observers:
            obs.on_block(call, q0, probs, lo, scores)
        flat = probs.to(call.value.dtype).view(b, h_kv, g * (q1 - q0), hi - lo)
        out = torch.matmul(flat, call.value[:, :, lo:hi])  # [B, H_kv, G*q, Dv]
        outs.append(out.view(b, h_kv * g, q1 - q0, -1))
    output = torch.cat(outs, dim=2).transpose(1, 2).contiguous()  # [B, Q, H, Dv]
    return KernelOutput(output=output)
