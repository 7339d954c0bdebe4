"""StateCache: the model cache of a linear / hybrid model, whose memory does not grow with context.

Each converted layer keeps (a) the last `window - 1` keys and values (none for pure linear
attention) and (b) the state S = sum phi_k(k_j) v_j^T [B, H, F, Dv] and normaliser
z = sum phi_k(k_j) [B, H, F] of every key older than that. `update` returns the kept keys
plus the new ones (as transformers' sliding-window layer does, so masks line up); the
`linear` / `hybrid` kernel computes the call, then folds the keys that left the window into
the state (`StateLayer.store`). Sliding-window layers (Gemma3's local layers, which stay
softmax) get transformers' own sliding-window layer.

    cache = attnlab.convert.StateCache(model, window=64)
    with attnlab.attach(model, kernel="hybrid", maps=maps):
        model.generate(ids, past_key_values=cache, max_new_tokens=32)

Only the linear and hybrid kernels may run on this cache: another kernel would see only
the window's keys. The kernels check that the state they read covers exactly the keys
before the ones they are given (an error otherwise).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicSlidingWindowLayer


class StateLayer(CacheLayerMixin):
    """One converted layer's cache: a window of raw keys / values + the linear state."""

    is_sliding = False

    def __init__(self, window: int = 0, **kwargs):
        super().__init__()
        self.window, self.keep = int(window), max(int(window) - 1, 0)
        self.cumulative = 0  # tokens seen
        self.folded = 0  # tokens whose keys are in the state
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.keys, self.values = key_states[:, :, :0], value_states[:, :, :0]
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Append the new keys [B, H_kv, n, D]; return the kept ones + the new ones."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.cumulative += key_states.shape[-2]
        keys = torch.cat([self.keys, key_states], dim=-2)
        values = torch.cat([self.values, value_states], dim=-2)
        held = min(self.keep, keys.shape[-2])
        # clone: a slice is a view that would keep the whole prefill's keys alive
        self.keys = keys[:, :, keys.shape[-2] - held:].clone()
        self.values = values[:, :, values.shape[-2] - held:].clone()
        return keys, values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        held = self.keys.shape[-2] if self.is_initialized else 0
        return held + query_length, self.cumulative - held

    def get_seq_length(self) -> int:
        return self.cumulative

    def get_max_length(self) -> int:
        return -1

    def take(self, k_start: int, window: int):
        """The (S, z) of the keys before position k_start, or None at the start."""
        if window != self.window:
            raise ValueError(f"StateCache layer made for window {self.window}, kernel runs window {window}")
        if self.folded != k_start:
            raise RuntimeError(f"StateCache: the state holds {self.folded} tokens but the call's keys start at "
                               f"{k_start}; was this cache used by a kernel other than linear / hybrid?")
        return self.state

    def store(self, fk: torch.Tensor, v: torch.Tensor, state) -> None:
        """Fold the call's keys that left the window (fk [B, H, K, F], v [B, H, K, Dv]) into the state."""
        from ..kernels.linear import empty_state, fold

        gone = fk.shape[2] - self.keys.shape[-2]
        if state is None:
            state = empty_state(fk.shape[0], fk.shape[1], fk.shape[-1], v.shape[-1], fk.device)
        self.state = fold(state, fk[:, :, :gone].detach(), v[:, :, :gone].detach())
        self.folded += gone

    def memory(self) -> int:
        """Bytes held (window keys / values + state)."""
        held = [self.keys, self.values] if self.is_initialized else []
        held += list(self.state) if self.state is not None else []
        return sum(t.numel() * t.element_size() for t in held)


class StateCache(Cache):
    """A transformers Cache of `StateLayer`s (and sliding-window layers for a model's local layers)."""

    def __init__(self, model, window: int = 0):
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        types = getattr(cfg, "layer_types", None) or ["full_attention"] * cfg.num_hidden_layers
        layers = [DynamicSlidingWindowLayer(cfg.sliding_window) if t == "sliding_attention" else StateLayer(window)
                  for t in types]
        super().__init__(layers=layers)

    def memory(self) -> int:
        """Bytes held by every layer."""
        total = 0
        for layer in self.layers:
            if isinstance(layer, StateLayer):
                total += layer.memory()
            elif layer.is_initialized:
                total += layer.keys.numel() * layer.keys.element_size() * 2
        return total


def state_layer(call) -> StateLayer | None:
    """The StateLayer of the call's module in the cache it was given, or None (stock cache / none)."""
    from ..core import dispatch

    session = dispatch.session_of(call.module) if call.module is not None else None
    seen = session.seen.get(id(call.module)) if session is not None else None
    cache = getattr(seen, "cache", None)
    if not isinstance(cache, StateCache):
        return None
    layer = cache.layers[getattr(call.module, "layer_idx", call.layer)]
    return layer if isinstance(layer, StateLayer) else None
