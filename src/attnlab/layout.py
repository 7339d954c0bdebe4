"""What a model's attention looks like, read off the calls that reach the dispatcher."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LayerRecorder:
    """Observer that records, per site (stack, role, layer), the shape facts of the first call it sees."""

    layers: dict = field(default_factory=dict)  # Site -> facts
    calls_per_layer: dict = field(default_factory=dict)  # Site -> calls

    def on_call(self, call) -> None:
        self.calls_per_layer[call.site] = self.calls_per_layer.get(call.site, 0) + 1
        self.layers.setdefault(call.site, {
            "stack": call.site.name,
            "layer": call.layer,
            "module": type(call.module).__name__,
            "heads": call.num_heads,
            "kv_heads": call.num_kv_heads,
            "head_dim": call.query.shape[-1],
            "causal": call.causal,
            "sliding_window": call.sliding_window,
            "softcap": call.softcap,
            "scaling": round(float(call.scaling), 6),
        })


def layout(model, tokenizer, kernel: str = "sdpa") -> dict:
    """Per-layer attention layout of `model`, from one short forward through attnlab.

    Returns {"model": class name, "layers": [...], "kernel": kernel, "calls": n,
    "context": max tokens}; each layer lists its stack (site name: "decoder", "encoder",
    "decoder.cross"), layer, heads, kv_heads, head_dim, causal, sliding_window, softcap and
    scaling, in the order the model runs them. An encoder-decoder's decoder reads the
    sentence shifted right (`text.teacher_forced`).
    """
    import torch

    from .models import context_length
    from .core.session import attach
    from .text import encode, teacher_forced

    recorder = LayerRecorder()
    inputs = teacher_forced(model, encode(model, tokenizer, "Attention is all you need."))
    with attach(model, kernel=kernel, observe=[recorder]) as session, torch.no_grad():
        model(**inputs)
    return {
        "model": type(model).__name__,
        "kernel": kernel,
        "context": context_length(model),
        "calls": session.calls,
        "layers": list(recorder.layers.values()),
    }
