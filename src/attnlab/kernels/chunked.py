"""Exact attention in query and key blocks with a running max and log-sum-exp: O(n) memory.

Never holds more than B*H*block_size*key_block scores at once (the whole n x n map is
never built), yet equals `eager` up to float rounding: each query block sweeps the key
blocks, keeping the running row maximum m, the running sum of exp(score - m) and the
running weighted sum of values, rescaled whenever m grows (Rabe & Staats; FlashAttention).
Key blocks outside the block's visible key range (causal future, outside a sliding
window, `core.scores.key_range`) are skipped. Sink logits start the sweep as one extra
key with no value. Probabilities are never materialised, so `exposes_probs` is False.

Masked scores are set to the dtype's minimum, like eager, so a fully masked padding row
comes out as the mean of the values it swept (finite, never NaN).
"""

from __future__ import annotations

import torch

from ..core import scores as sc
from ..core.call import AttnCall, KernelOutput
from ..core.hooks import Hooks


def _query_block(call: AttnCall, q0: int, q1: int, key_block: int) -> torch.Tensor:
    """Exact attention output of queries [q0, q1): [B, H, q, Dv] fp32."""
    b, h, h_kv, q = call.batch, call.num_heads, call.num_kv_heads, q1 - q0
    dev = call.device
    m = torch.full((b, h, q, 1), -torch.inf, device=dev)  # running max
    denom = torch.zeros(b, h, q, 1, device=dev)  # running sum of exp(score - m)
    sink = sc.sink_logits(call)  # [1, H, 1] or None
    if sink is not None:
        m = sink[..., None].expand(b, h, q, 1).clone()
        denom = torch.ones(b, h, q, 1, device=dev)
    acc = torch.zeros(b, h, q, call.value.shape[-1], device=dev)  # running weighted values
    lo, hi = sc.key_range(call, q0, q1)
    for k0 in range(lo - lo % key_block, hi, key_block):
        k1 = min(call.k_len, k0 + key_block)
        scores = sc.logits(call, q0, q1, k0, k1)  # [B, H, q, k]
        m_new = torch.maximum(m, scores.amax(-1, keepdim=True))
        rescale = torch.exp(m - m_new)
        p = torch.exp(scores - m_new)
        denom = denom * rescale + p.sum(-1, keepdim=True)
        value = call.value[:, :, k0:k1].float()  # [B, H_kv, k, Dv]
        pv = torch.matmul(p.view(b, h_kv, -1, k1 - k0), value).view(b, h, q, -1)
        acc = acc * rescale + pv
        m = m_new
    return acc / denom


def forward(call: AttnCall, hooks: Hooks, block_size: int = 256, key_block: int = 1024) -> KernelOutput:
    """Exact attention, `block_size` queries x `key_block` keys at a time; output [B, Q, H, Dv].

    Peak extra memory ~ B*H*block_size*key_block fp32 scores, independent of sequence
    length squared. Serves every call eager serves (GQA without copying keys, masks,
    windows, biases, position biases, softcaps, sinks, self and cross).
    """
    if block_size < 1 or key_block < 1:
        raise ValueError(f"chunked: block_size and key_block must be >= 1, got {block_size}, {key_block}")
    if call.mask is not None and call.mask.shape[1] not in (1, call.num_heads):
        raise ValueError(f"chunked: mask head dimension {call.mask.shape[1]} is neither 1 nor {call.num_heads}")
    outs = []
    for q0 in range(0, call.q_len, block_size):
        q1 = min(call.q_len, q0 + block_size)
        outs.append(_query_block(call, q0, q1, key_block))  # [B, H, q, Dv]
    output = torch.cat(outs, dim=2).to(call.value.dtype).transpose(1, 2).contiguous()  # [B, Q, H, Dv]
    return KernelOutput(output=output, density=1.0)
