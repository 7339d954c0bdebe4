"""The KV policy of one attach(): swap in compressible cache layers, compress after prefill,
hand decode calls their per-head visibility, keep decoding within its budget.

Pipeline per attention call of a layer whose cache is a `CompressedLayer`:
  before(call)  a call on a compressed cache gets mask [B, H, Q, K] = the slots each head
                holds (`keep`), and causality among the call's own new tokens; selection
                rules (quest, ...) may serve the call themselves
  kernel        unchanged (prefill runs on the full keys, with the session's kernel)
  after(call)   prefill: score, select, `CompressedLayer.compress`; decode: the decode budget

Layers left alone (and why) are listed in `skipped`: sliding-window layers (their cache is
already bounded), cross-attention, caches other than transformers' dynamic layers.
"""

from __future__ import annotations

import dataclasses

import torch

from ..core.call import AttnCall
from ..errors import InputError
from .policy import KVPolicy

EXACT_KERNELS = ("eager", "chunked", "sdpa")  # kernels that honour a per-head mask


class KVState:
    """Per-attach KV bookkeeping: which cache layer each attention module uses, what was skipped."""

    def __init__(self, policy: KVPolicy):
        self.policy = policy
        self.where: dict[int, tuple] = {}  # id(module) -> (cache, layer index)
        self.skipped: dict[int, str] = {}  # layer -> reason it is left alone
        self.caches: list = []  # caches seen, newest last
        self.prefill_seconds = 0.0  # time spent scoring and compressing
        self.selection_state: dict[int, dict] = {}

    def install(self, model) -> list:
        """Forward pre-hooks on every attention module (removed by the caller on detach)."""
        from ..core import sites

        handles = []
        for name, module in sites.attention_modules(model).values():
            layer = getattr(module, "layer_idx", None)
            idx = layer if isinstance(layer, int) else sites.split_name(name)[1]
            handles.append(module.register_forward_pre_hook(self._hook(idx), with_kwargs=True))
        return handles

    def _hook(self, idx: int):
        from transformers.cache_utils import Cache

        from ..core.sites import find_cache

        def hook(module, args, kwargs):
            cache = find_cache(args, kwargs, Cache)
            if cache is None or any(kwargs.get(k) is not None for k in ("key_value_states", "encoder_hidden_states")):
                return None
            self._prepare(cache, idx, module)
            return None

        return hook

    def _prepare(self, cache, idx: int, module) -> None:
        """Swap cache layer `idx` for a CompressedLayer before its first update (or explain why not)."""
        from transformers.cache_utils import DynamicLayer

        from .cache import CompressedLayer

        layers = getattr(cache, "layers", None)
        if layers is None:
            raise InputError(f"kv policy {self.policy}: {type(cache).__name__} has no per-layer caches; "
                             "use transformers' DynamicCache (the default of generate())")
        while len(layers) <= idx and getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:
            layers.append(CompressedLayer())
        if idx >= len(layers):
            self.skipped[idx] = f"{type(cache).__name__} creates its layers itself"
            return
        layer = layers[idx]
        if type(layer) is DynamicLayer and not layer.is_initialized:
            layers[idx] = CompressedLayer()
        elif not isinstance(layer, CompressedLayer):
            self.skipped[idx] = (f"{type(layer).__name__}: its cache is already bounded (sliding window); left alone"
                                 if getattr(layer, "is_sliding", False) else f"{type(layer).__name__} is not compressible")
        if not self.caches or self.caches[-1] is not cache:
            self.caches.append(cache)
        self.where[id(module)] = (cache, idx)

    def layer_of(self, call: AttnCall):
        """The CompressedLayer of the call's module, or None (not compressible / no cache)."""
        from .cache import CompressedLayer

        entry = self.where.get(id(call.module)) if call.module is not None else None
        if entry is None or call.role != "self":
            return None
        layer = entry[0].layers[entry[1]]
        return layer if isinstance(layer, CompressedLayer) else None

    def before(self, call: AttnCall, session) -> "tuple[AttnCall, object]":
        """The call the kernel should run (per-head mask on a compressed cache) and an
        optional KernelOutput when a selection rule served the call itself."""
        layer = self.layer_of(call)
        if layer is None or layer.keep is None:
            if self.policy.selection and layer is not None and call.phase == "decode":
                from .selection import serve

                return call, serve(self, layer, call, session)
            return call, None
        call = with_keep_mask(call, layer.keep)
        served = None
        if self.policy.selection and call.q_len == 1:
            from .selection import serve

            served = serve(self, layer, call, session)
        if served is None and session.kernel_name not in EXACT_KERNELS:
            from ..kernels import sdpa  # the session's kernel may not honour a per-head mask

            served = sdpa.forward(call, session.hooks)
        return call, served

    def after(self, call: AttnCall) -> None:
        """Compress after the prefill call; hold the decode budget after decode calls."""
        import time

        layer = self.layer_of(call)
        if layer is None:
            return
        start = time.perf_counter()
        if layer.is_initialized and layer.keys.shape[:3] != call.key.shape[:3]:
            self.skipped[call.layer] = (f"its cache holds {tuple(layer.keys.shape)}, not the call's keys "
                                        f"{tuple(call.key.shape)} (e.g. MLA latents); left alone")
            return
        if call.phase == "prefill" and not layer.compressed and self.policy.evicts and layer.seen == call.k_len:
            from .evict import compress_prefill

            compress_prefill(self.policy, layer, call)
        elif call.phase != "prefill" and self.policy.decode_budget is not None:
            from .decode import hold_budget

            hold_budget(self.policy, layer, call)
        self.prefill_seconds += time.perf_counter() - start if call.phase == "prefill" else 0.0

    def layers(self) -> dict:
        """{layer index: CompressedLayer} of the newest cache."""
        from .cache import CompressedLayer

        if not self.caches:
            return {}
        return {i: l for i, l in enumerate(self.caches[-1].layers) if isinstance(l, CompressedLayer)}

    def bytes(self) -> dict:
        """Bytes held: {'total', 'layers': {layer: {'held', 'per_head', 'tokens'}}, 'skipped',
        'left_alone', 'cache_total'}. 'total' counts the layers the policy manages; 'left_alone'
        the bytes of the cache's other layers (e.g. Gemma3's sliding-window layers, already
        bounded by their window); 'cache_total' the whole cache (the two summed)."""
        out, total = {}, 0
        for i, layer in self.layers().items():
            held = layer.held_bytes()
            total += held
            out[i] = {"held": held, "per_head": layer.head_bytes(),
                      "tokens": layer.visible_counts().tolist() if layer.is_initialized else []}
        others = 0
        for i, layer in enumerate(self.caches[-1].layers if self.caches else []):
            if i not in out and getattr(layer, "is_initialized", False) and layer.keys is not None:
                others += layer.keys.numel() * layer.keys.element_size() + layer.values.numel() * layer.values.element_size()
        return {"total": total, "layers": out, "skipped": dict(self.skipped), "left_alone": others,
                "cache_total": total + others}


def with_keep_mask(call: AttnCall, keep: torch.Tensor) -> AttnCall:
    """The call with mask [B, H, Q, K]: cached slots visible where `keep` [B, H_kv, K'] says, and
    the call's own Q new tokens causal among themselves (they are the last Q slots)."""
    q, k = call.q_len, call.k_len
    old = keep[..., :k - q].repeat_interleave(call.groups, dim=1)  # [B, H, K - Q]
    mask = torch.ones(call.batch, call.num_heads, q, k, dtype=torch.bool, device=call.device)
    mask[..., :k - q] = old[:, :, None, :]
    if q > 1:
        mask[..., k - q:] = torch.ones(q, q, dtype=torch.bool, device=call.device).tril()
    if call.bias is not None or call.position_bias is not None:
        raise InputError(f"{call.site}: kv compression does not support additive mask / position-bias terms")
    return dataclasses.replace(call, mask=mask)
