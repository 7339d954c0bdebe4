"""Exact attention in query and key blocks with a running max and log-sum-exp: O(n) memory.

Never holds more than B*H*block_size*key_block scores at once (the whole n x n map is
never built), yet equals `eager` up to float rounding: each query block sweeps the key
blocks, keeping the running row maximum m, the running sum of exp(score - m) and the
running weighted sum of values, rescaled whenever m grows (Rabe & Staats; FlashAttention).
Key blocks that no query of the block can see (causal future, outside a sliding window)
are skipped. Probabilities are never materialised, so `exposes_probs` is False.

Masked scores are set to the dtype's minimum, like eager, so a fully masked padding row
comes out as the mean of the values it swept (finite, never NaN).
"""

from __future__ import annotations

import torch

from ..call import AttnCall, KernelOutput
from ..hooks import Hooks


def _key_range(call: AttnCall, q0: int, q1: int, key_block: int) -> range:
    """Start offsets of the key blocks queries [q0, q1) may see by position (causal rule and
    sliding window, which transformers' masks of causal layers always include)."""
    hi = call.k_len
    lo = 0
    if call.causal:
        hi = min(hi, q1 + call.q_offset)
        if call.sliding_window is not None:
            lo = max(0, q0 + call.q_offset - call.sliding_window + 1)
    return range(lo - lo % key_block, hi, key_block)


def _block_logits(call: AttnCall, q: torch.Tensor, q0: int, q1: int, k0: int, k1: int) -> torch.Tensor:
    """Masked fp32 logits [B, H_kv, G, q, k] of query rows q [B, H_kv, G, q, D] against keys [k0, k1)."""
    key = call.key[:, :, k0:k1].unsqueeze(2)  # [B, H_kv, 1, k, D]
    scores = torch.matmul(q, key.transpose(-1, -2)).float() * call.scaling
    if call.softcap is not None:
        scores = torch.tanh(scores / call.softcap) * call.softcap
    if call.bias is not None:
        bias = call.bias[:, :, q0:q1, k0:k1].float()  # [B|1, 1|H, q, k]
        scores = scores + bias.reshape(bias.shape[0], -1, bias.shape[1] // call.num_kv_heads or 1, q1 - q0, k1 - k0)
    visible = call.visible(q0, q1)[..., k0:k1]  # [B|1, 1|H, q, k]
    visible = visible.reshape(visible.shape[0], -1, visible.shape[1] // call.num_kv_heads or 1, q1 - q0, k1 - k0)
    return scores.masked_fill(~visible, torch.finfo(scores.dtype).min)


def _query_block(call: AttnCall, q0: int, q1: int, key_block: int) -> torch.Tensor:
    """Exact attention output of queries [q0, q1): [B, H_kv, G, q, Dv] fp32."""
    b, h_kv, g = call.batch, call.num_kv_heads, call.groups
    q = call.query[:, :, q0:q1].reshape(b, h_kv, g, q1 - q0, -1)  # [B, H_kv, G, q, D]
    m = torch.full((b, h_kv, g, q1 - q0, 1), -torch.inf)  # running max
    denom = torch.zeros(b, h_kv, g, q1 - q0, 1)  # running sum of exp(score - m)
    acc = torch.zeros(b, h_kv, g, q1 - q0, call.value.shape[-1])  # running weighted values
    for k0 in _key_range(call, q0, q1, key_block):
        k1 = min(call.k_len, k0 + key_block)
        scores = _block_logits(call, q, q0, q1, k0, k1)  # [B, H_kv, G, q, k]
        m_new = torch.maximum(m, scores.amax(-1, keepdim=True))
        rescale = torch.exp(m - m_new)
        p = torch.exp(scores - m_new)
        denom = denom * rescale + p.sum(-1, keepdim=True)
        value = call.value[:, :, k0:k1].unsqueeze(2).float()  # [B, H_kv, 1, k, Dv]
        acc = acc * rescale + torch.matmul(p, value)
        m = m_new
    return acc / denom


def forward(call: AttnCall, hooks: Hooks, block_size: int = 256, key_block: int = 1024) -> KernelOutput:
    """Exact attention, `block_size` queries x `key_block` keys at a time; output [B, Q, H, Dv].

    Peak extra memory ~ B*H*block_size*key_block fp32 scores, independent of sequence
    length squared. Handles GQA without copying keys, padding masks, sliding windows,
    additive biases and logit soft-capping.
    """
    if block_size < 1 or key_block < 1:
        raise ValueError(f"chunked: block_size and key_block must be >= 1, got {block_size}, {key_block}")
    if call.mask is not None and call.mask.shape[1] not in (1, call.num_heads):
        raise ValueError(f"chunked: mask head dimension {call.mask.shape[1]} is neither 1 nor {call.num_heads}")
    outs = []
    for q0 in range(0, call.q_len, block_size):
        q1 = min(call.q_len, q0 + block_size)
        outs.append(_query_block(call, q0, q1, key_block).flatten(1, 2))  # [B, H, q, Dv]
    output = torch.cat(outs, dim=2).to(call.value.dtype).transpose(1, 2).contiguous()  # [B, Q, H, Dv]
    return KernelOutput(output=output, density=1.0)
