"""PyTorch's fused scaled-dot-product attention, exactly as transformers calls it.

The fast dense baseline. It never materialises probabilities, so it serves only
modifiers and observers that act on the output (`Kernel.exposes_probs` is False).
Softcapped or sink-logit calls (Gemma2, gpt-oss) run the exact eager fallback.

band=True (off by default, so `sdpa` stays exactly what transformers runs): prefill calls
of sliding-window layers run as `blocks.band`, each 512-query chunk on just the keys its
window reaches, instead of the full n x n map under a mask. Same result (exact), O(n x
window) work: on Gemma3 at 16k tokens 15 of 18 layers.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from ..core.call import AttnCall, KernelOutput
from ..core.hooks import Hooks


def _mask_for_sdpa(call: AttnCall) -> torch.Tensor | None:
    """The mask to hand transformers' SDPA path: the model's, or the call's position rules
    where SDPA's own `is_causal` (top-left aligned; transformers even crops the keys to Q
    for it) would be wrong: queries on a cache (extend) or a sliding window without a mask."""
    visible = call.mask
    if visible is None and call.positional and call.causal:
        windowed = call.sliding_window is not None and call.sliding_window < call.k_len
        if windowed or (call.q_offset != 0 and call.q_len > 1):
            visible = call.visible()
    elif visible is None and call.positional and call.sliding_window is not None:
        visible = call.visible()
    if call.bias is None:
        return visible
    floor = torch.finfo(call.query.dtype).min
    return call.bias.to(call.query.dtype).masked_fill(~call.visible(), floor)


def _module(call: AttnCall):
    """The module transformers' SDPA path reads GQA from (`num_key_value_groups`): the call's
    own when it says the call's group size, else a stand-in that does (direct calls)."""
    if call.module is not None and getattr(call.module, "num_key_value_groups", 1) == call.groups:
        return call.module
    return SimpleNamespace(num_key_value_groups=call.groups, is_causal=call.causal)


def forward(call: AttnCall, hooks: Hooks, band: bool = False) -> KernelOutput:
    """Dense attention through transformers' own `sdpa_attention_forward` (band: see above).

    Calls with a logit softcap or sink logits, which PyTorch's fused attention cannot
    apply, run the exact `eager` kernel in 256-query blocks instead.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from . import blocks, eager

    if call.softcap is not None or call.sinks is not None:
        return eager.forward(call, hooks, block_size=256)
    if band and call.dropout == 0 and blocks.band_serves(call):
        return blocks.band(call)
    output, _ = sdpa_attention_forward(
        _module(call),
        call.query,
        call.key,
        call.value,
        _mask_for_sdpa(call),
        dropout=call.dropout,
        scaling=call.scaling,
        is_causal=call.causal,
        position_bias=call.position_bias,
        **call.kwargs,
    )
    return KernelOutput(output=output)
