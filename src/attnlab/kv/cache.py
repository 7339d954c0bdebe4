"""A cache layer whose heads hold different tokens: compressed storage with a visibility mask.

`CompressedLayer` replaces transformers' `DynamicLayer` of a full-attention layer (the
attach() pre-hook swaps it in, so `model.generate()` and a user's own `DynamicCache` both
work). Until compression it behaves exactly like a DynamicLayer. `compress(selected)`
packs each (row, key head)'s selected tokens to the front, in position order, into new
tensors of the longest head's length L, and frees the old ones:

    keys   [B, H_kv, L + t, D]   values [B, H_kv, L + t, Dv]   (t tokens appended since)
    keep   [B, H_kv, L + t]      bool, True = a real token this head holds (False = slot padding)
    pos    [B, H_kv, L + t]      long, the token's index in the row's sequence (-1 = empty slot)

`get_seq_length()` stays the number of tokens the sequence has seen (rotary positions,
generate's bookkeeping); `get_mask_sizes()` gives the physical length, and the attention
call of this layer gets `keep` as its per-head mask (`kv.state`).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class CompressedLayer(DynamicLayer):
    """DynamicLayer with per-head token sets after `compress` (see the module docstring)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = 0  # tokens of the sequence this layer has been given
        self.keep: torch.Tensor | None = None  # [B, H_kv, K] bool, None = every slot visible
        self.pos: torch.Tensor | None = None  # [B, H_kv, K] long
        self.compressed = False
        self.score: torch.Tensor | None = None  # [B, H_kv, K] running decode scores (decode budget)
        self.first: torch.Tensor | None = None  # [B] long, each row's left padding (pos counts from it)

    def update(self, key_states, value_states, *args, **kwargs):
        """Append [B, H_kv, t, D] keys / values; returns all stored keys and values."""
        t = key_states.shape[-2]
        keys, values = super().update(key_states, value_states, *args, **kwargs)
        if self.keep is not None:
            b, h = key_states.shape[:2]
            new_pos = torch.arange(self.seen, self.seen + t, device=keys.device).expand(b, h, t)
            if self.first is not None:
                new_pos = new_pos - self.first.to(keys.device)[:, None, None]
            self.keep = torch.cat([self.keep, torch.ones(b, h, t, dtype=torch.bool, device=keys.device)], -1)
            self.pos = torch.cat([self.pos, new_pos], -1)
            if self.score is not None:
                self.score = torch.cat([self.score, self.score.new_zeros(b, h, t)], -1)
        self.seen += t
        return keys, values

    def get_seq_length(self) -> int:
        return self.seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        physical = 0 if not self.is_initialized or self.keys.numel() == 0 else self.keys.shape[-2]
        return physical + query_length, 0

    def physical_length(self) -> int:
        return 0 if not self.is_initialized or self.keys.numel() == 0 else int(self.keys.shape[-2])

    def compress(self, selected: torch.Tensor, positions: torch.Tensor | None = None) -> None:
        """Keep, per (row, key head), the slots where selected [B, H_kv, K] is True.

        positions [B, H_kv, K] long: the slots' sequence indices (default: this layer's
        `pos`, or the slot index before any compression).
        """
        if positions is None:
            positions = self.pos if self.pos is not None else torch.arange(
                selected.shape[-1], device=selected.device).expand_as(selected)
        counts = selected.sum(-1)  # [B, H_kv]
        length = int(counts.max()) if counts.numel() else 0
        order = torch.sort((~selected).to(torch.int8), dim=-1, stable=True).indices[..., :length]  # [B, H_kv, L]
        keep = torch.arange(length, device=selected.device) < counts[..., None]  # [B, H_kv, L]
        d, dv = self.keys.shape[-1], self.values.shape[-1]
        self.keys = torch.gather(self.keys, 2, order[..., None].expand(*order.shape, d)).contiguous()
        self.values = torch.gather(self.values, 2, order[..., None].expand(*order.shape, dv)).contiguous()
        self.keys.masked_fill_(~keep[..., None], 0)
        self.values.masked_fill_(~keep[..., None], 0)
        self.pos = torch.gather(positions, 2, order).masked_fill(~keep, -1)
        if self.score is not None:
            self.score = torch.gather(self.score, 2, order)
        self.keep = keep
        self.compressed = True

    def visible_counts(self) -> torch.Tensor:
        """Tokens each (row, key head) holds: long [B, H_kv]."""
        if self.keep is None:
            b, h = self.keys.shape[:2]
            return torch.full((b, h), self.physical_length(), dtype=torch.long)
        return self.keep.sum(-1)

    def held_bytes(self) -> int:
        """Bytes of the key and value tensors this layer holds (padding slots included)."""
        if not self.is_initialized or self.keys is None:
            return 0
        return self.keys.numel() * self.keys.element_size() + self.values.numel() * self.values.element_size()

    def head_bytes(self) -> list[int]:
        """Bytes of the real (visible) tokens per key head, summed over rows."""
        if not self.is_initialized or self.keys is None:
            return []
        per_token = self.keys.shape[-1] * self.keys.element_size() + self.values.shape[-1] * self.values.element_size()
        return [int(c) * per_token for c in self.visible_counts().sum(0)]

    def crop(self, tokens_to_remove: int) -> None:
        if self.compressed:
            raise NotImplementedError("attnlab kv: a compressed cache layer cannot be cropped (assisted decoding)")
        super().crop(tokens_to_remove)
        self.seen = self.physical_length()

    def reset(self) -> None:
        super().reset()
        self.seen, self.keep, self.pos, self.score, self.compressed, self.first = 0, None, None, None, False, None
