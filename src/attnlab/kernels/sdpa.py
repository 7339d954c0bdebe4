"""PyTorch's fused scaled-dot-product attention, exactly as transformers calls it.

The fast dense baseline. It never materialises probabilities, so it serves only
modifiers and observers that act on the output (`Kernel.exposes_probs` is False).
"""

from __future__ import annotations

import torch

from ..call import AttnCall, KernelOutput
from ..hooks import Hooks


def _mask_for_sdpa(call: AttnCall) -> torch.Tensor | None:
    if call.bias is None:
        return call.mask
    floor = torch.finfo(call.query.dtype).min
    return call.bias.to(call.query.dtype).masked_fill(~call.visible(), floor)


def forward(call: AttnCall, hooks: Hooks) -> KernelOutput:
    """Dense attention through transformers' own `sdpa_attention_forward`."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if call.softcap is not None:
        raise ValueError(
            f"layer {call.layer}: kernel 'sdpa' cannot apply attention logit softcapping "
            f"(softcap={call.softcap}); use kernel='eager' or 'chunked'"
        )
    kwargs = {k: v for k, v in call.kwargs.items() if k not in ("softcap", "sliding_window")}
    output, _ = sdpa_attention_forward(
        call.module,
        call.query,
        call.key,
        call.value,
        _mask_for_sdpa(call),
        dropout=call.dropout,
        scaling=call.scaling,
        is_causal=call.causal,
        **kwargs,
    )
    return KernelOutput(output=output)
