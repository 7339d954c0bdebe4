"""The exact reference kernel: scores, softmax and weighted values, in query blocks.

Every other kernel is tested against this one. It mirrors transformers' own eager
attention (softmax in fp32, masked scores set to the dtype's minimum so that a fully
masked padding row becomes uniform rather than NaN) and is the kernel that exposes
scores and probabilities to modifiers and observers.
"""

from __future__ import annotations

import torch

from ..call import AttnCall, KernelOutput
from ..hooks import Hooks


def block_scores(call: AttnCall, q0: int, q1: int, key: torch.Tensor) -> torch.Tensor:
    """Masked, scaled (and soft-capped) logits of queries [q0, q1): [B, H, q, K] fp32."""
    q = call.query[:, :, q0:q1]
    scores = torch.matmul(q, key.transpose(-1, -2)).float() * call.scaling
    if call.softcap is not None:
        scores = torch.tanh(scores / call.softcap) * call.softcap
    if call.bias is not None:
        scores = scores + call.bias[:, :, q0:q1].float()
    hidden = ~call.visible(q0, q1)
    return scores.masked_fill(hidden, torch.finfo(scores.dtype).min)


def block_probs(call: AttnCall, q0: int, q1: int, key: torch.Tensor, hooks: Hooks) -> torch.Tensor:
    """Attention probabilities of queries [q0, q1) after modifiers: [B, H, q, K] fp32."""
    scores = hooks.scores(call, q0, block_scores(call, q0, q1, key))
    probs = torch.softmax(scores, dim=-1)
    return hooks.probs(call, q0, probs)


def forward(call: AttnCall, hooks: Hooks, block_size: int | None = None) -> KernelOutput:
    """Exact attention; `block_size` queries at a time (None = all at once).

    block_size bounds memory at B*H*block_size*K floats; results do not depend on it.
    """
    if block_size is not None and block_size < 1:
        raise ValueError(f"eager: block_size must be >= 1, got {block_size}")
    key, value = call.kv_for_heads()  # [B, H, K, D], [B, H, K, Dv]
    step = call.q_len if block_size is None else block_size
    outs, maps = [], []
    for q0 in range(0, call.q_len, step):
        q1 = min(call.q_len, q0 + step)
        probs = block_probs(call, q0, q1, key, hooks)
        probs = probs.to(value.dtype)
        if call.dropout and call.module is not None and call.module.training:
            probs = torch.nn.functional.dropout(probs, p=call.dropout, training=True)
        outs.append(torch.matmul(probs, value))  # [B, H, q, Dv]
        if call.output_attentions:
            maps.append(probs)
    output = torch.cat(outs, dim=2).transpose(1, 2).contiguous()  # [B, Q, H, Dv]
    weights = torch.cat(maps, dim=2) if maps else None
    return KernelOutput(output=output, weights=weights)
