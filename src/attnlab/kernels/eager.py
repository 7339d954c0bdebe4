"""The exact reference kernel: scores, softmax and weighted values, in query blocks.

Every other kernel is tested against this one. It mirrors transformers' own eager
attention (softmax in fp32, masked scores set to the dtype's minimum so that a fully
masked padding row becomes uniform rather than NaN, sink logits as an extra softmax
column) and is the kernel that exposes scores and probabilities to modifiers and
observers. Scores come from `core.scores.logits`; hooks run through `Hooks.run_probs`.
"""

from __future__ import annotations

import torch

from ..core import scores as sc
from ..core.call import AttnCall, KernelOutput
from ..core.hooks import Hooks


def forward(call: AttnCall, hooks: Hooks, block_size: int | None = None) -> KernelOutput:
    """Exact attention; `block_size` queries at a time (None = all at once).

    block_size bounds memory at B*H*block_size*K floats; results do not depend on it.
    Serves every call: causal or not, self or cross, GQA, masks, biases, position
    biases, softcaps, sink logits, value heads wider or narrower than query heads.
    """
    if block_size is not None and block_size < 1:
        raise ValueError(f"eager: block_size must be >= 1, got {block_size}")
    b, h_kv, g = call.batch, call.num_kv_heads, call.groups
    step = call.q_len if block_size is None else block_size
    outs, maps = [], []
    for q0 in range(0, call.q_len, step):
        q1 = min(call.q_len, q0 + step)
        probs = hooks.run_probs(call, q0, sc.logits(call, q0, q1)).to(call.value.dtype)  # [B, H, q, K]
        if call.dropout and call.module is not None and call.module.training:
            probs = torch.nn.functional.dropout(probs, p=call.dropout, training=True)
        out = torch.matmul(probs.reshape(b, h_kv, g * (q1 - q0), -1), call.value)  # [B, H_kv, G*q, Dv]
        outs.append(out.view(b, h_kv * g, q1 - q0, -1))
        if call.output_attentions:
            maps.append(probs)
    output = torch.cat(outs, dim=2).transpose(1, 2).contiguous()  # [B, Q, H, Dv]
    weights = torch.cat(maps, dim=2) if maps else None
    return KernelOutput(output=output, weights=weights)
