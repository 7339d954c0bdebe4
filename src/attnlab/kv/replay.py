"""One prefill, many policies: capture a prompt's prefill calls once, then build each policy's
compressed cache from them and decode. Exactly what attach(kv=...) computes (a layer is
compressed right after its own prefill attention, so the prefill itself never changes and
every policy starts from the same first token), without re-running the prefill.

    pre = capture(model, input_ids)                         # full prefill, calls kept
    cache = build_cache(model, pre, parse("snapkv:ratio=0.5"))
    tokens, stats = greedy(model, cache, pre.next_token, 8, "snapkv:ratio=0.5")
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .policy import KVPolicy, parse


@dataclass
class Prefill:
    """A captured prefill: its self-attention calls per layer and the first generated token."""

    calls: dict  # layer -> AttnCall (query [1, H, T, D], key / value [1, H_kv, T, D])
    next_token: torch.Tensor  # [B, 1] long, greedy
    seconds: float


class _Capture:
    def __init__(self):
        self.calls = {}

    def on_call(self, call):
        if call.phase == "prefill" and call.role == "self":
            self.calls[call.layer] = call


def capture(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Prefill:
    """Run the prefill once under attach() (sdpa) and keep every layer's call.

    Only the last position's logits are computed where the model allows it
    (`logits_to_keep=1`): Gemma3's 262k-token vocabulary would need 8.6 GB of logits at 8192."""
    import inspect

    from .. import attach

    grab = _Capture()
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    start = time.perf_counter()
    with torch.no_grad(), attach(model, kernel="sdpa", observe=[grab]):
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra)
    return Prefill(grab.calls, out.logits[:, -1:].argmax(-1), time.perf_counter() - start)


def build_cache(model, pre: Prefill, policy: "KVPolicy | str", memo: dict | None = None):
    """A DynamicCache holding what `policy` keeps of the captured prefill: a CompressedLayer per
    full-attention layer, and for a sliding-window layer (Gemma3's local layers) the model's
    own sliding-window cache layer, left alone as attach(kv=...) leaves it (its cache is
    already bounded). memo: a dict shared across calls on the same prefill reuses each
    scorer's scores across ratios."""
    from transformers.cache_utils import DynamicCache, DynamicSlidingWindowLayer

    from .cache import CompressedLayer
    from .evict import compress_prefill

    policy = parse(policy)
    layers = []
    for i in sorted(pre.calls):
        call = pre.calls[i]
        if call.sliding_window is not None:
            layer = DynamicSlidingWindowLayer(sliding_window=_cache_window(model, call))
            layer.update(call.key, call.value)
            layers.append(layer)
            continue
        layer = CompressedLayer()
        layer.update(call.key, call.value)
        if policy.evicts:
            compress_prefill(policy, layer, call, memo)
        layers.append(layer)
    cache = DynamicCache()
    cache.layers = layers
    return cache


def _cache_window(model, call) -> int:
    """The sliding_window transformers' own cache layer is built with (the config's value)."""
    window = getattr(model.config.get_text_config(), "sliding_window", None)
    return int(window) if window else int(call.sliding_window)


def greedy(model, cache, first: torch.Tensor, n: int, policy, kernel: str = "sdpa") -> tuple[torch.Tensor, dict]:
    """Decode n tokens greedily after `first` [B, 1] on `cache` under attach(kv=policy).

    Returns tokens [B, n] (first included) and {'seconds', 'tokens_per_s', 'kv_bytes'} of the
    n - 1 decode steps."""
    from .. import attach
    from ..models import cache_kwarg

    tokens = [first]
    with torch.no_grad(), attach(model, kernel=kernel, kv=policy) as s:
        start = time.perf_counter()
        for _ in range(n - 1):
            out = model(input_ids=tokens[-1], use_cache=True, **{cache_kwarg(model): cache})
            tokens.append(out.logits[:, -1:].argmax(-1))
        seconds = time.perf_counter() - start
        held = s.kv_bytes
    return torch.cat(tokens, 1), {"seconds": seconds, "tokens_per_s": (n - 1) / max(seconds, 1e-9),
                                  "kv_bytes": held["total"], "kv_bytes_left_alone": held["left_alone"]}
