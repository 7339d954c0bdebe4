"""The exact dense paths the sparse kernels fall back to: `dense` (fused SDPA on the model's
own visibility, chunked for score terms) and `band` (a sliding-window layer on just the keys
each chunk's window reaches)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.call import AttnCall, KernelOutput
from ..core.hooks import Hooks


def dense(call: AttnCall, hooks: Hooks) -> KernelOutput:
    """The dense fallback (documented `min_len` / decode policies): output [B, Q, H, Dv].

    Fused SDPA on the model's own visibility (GQA without copying keys); `chunked` when
    the call has a softcap or a bias, which SDPA cannot apply.
    """
    from . import chunked

    if call.has_score_terms or not call.positional:
        return chunked.forward(call, hooks)
    mask, is_causal = call.mask, False
    if mask is None and call.causal:
        windowed = call.sliding_window is not None and call.sliding_window < call.k_len
        if call.q_offset == 0 and not windowed:
            is_causal = True  # SDPA's causal rule is top-left aligned: right only without a cache
        else:
            mask = call.visible()
    out = F.scaled_dot_product_attention(call.query, call.key, call.value, attn_mask=mask, is_causal=is_causal,
                                         scale=call.scaling, enable_gqa=call.groups > 1)  # [B, H, Q, Dv]
    return KernelOutput(output=out.transpose(1, 2).contiguous(), density=1.0)


def band(call: AttnCall, chunk: int = 512) -> KernelOutput:
    """Exact attention of a sliding-window layer, O(n x (chunk + window)): output [B, Q, H, Dv].

    Stock SDPA applies a window as a mask over the full n x n map (Gemma3's 512-token
    layers at 16k tokens compute 32x more than they need). Here each chunk of `chunk`
    queries runs one fused SDPA call on just the keys its window reaches, under the
    model's own visibility (padding mask, causal, window) sliced to that range, so the
    result equals dense attention. Needs a causal call with a window, no softcap / bias.
    """
    if not band_serves(call):
        raise ValueError(f"layer {call.layer}: band attention needs a causal sliding-window call without softcap or bias")
    outs = []
    for q0 in range(0, call.q_len, chunk):
        q1 = min(call.q_len, q0 + chunk)
        lo, hi = max(0, call.q_offset + q0 - call.sliding_window + 1), min(call.k_len, call.q_offset + q1)
        mask = call.visible(q0, q1)[..., lo:hi]
        outs.append(F.scaled_dot_product_attention(call.query[:, :, q0:q1], call.key[:, :, lo:hi],
                                                   call.value[:, :, lo:hi], attn_mask=mask, scale=call.scaling,
                                                   enable_gqa=call.groups > 1))  # [B, H, q, Dv]
    return KernelOutput(output=torch.cat(outs, dim=2).transpose(1, 2).contiguous(), density=1.0)


def band_serves(call: AttnCall) -> bool:
    """Whether `band` can compute this call: a causal sliding-window prefill/extend call
    (more than one query) without softcap or bias."""
    return (call.positional and call.causal and call.sliding_window is not None and not call.has_score_terms
            and call.q_len > 1)


def covers_window(call: AttnCall, keys: int) -> bool:
    """Whether a budget of `keys` keys per query covers the layer's whole sliding window
    (then `band` is the exact, cheaper way to compute it)."""
    return band_serves(call) and call.sliding_window <= keys
