"""What every probability-level modifier shares: pick the selected heads of one call,
see which keys each query may see, and renormalise over those keys only.

A modifier's rule is a pure function `rule(probs, visible, block) -> probs` on the selected
heads only (probs [B, h, q, K] fp32, visible bool [B|1, 1, q, K]); `on_heads` does the
selection, the masking and the write-back. Rows that see no key at all (queries at
padding positions) are left exactly as the kernel made them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.call import AttnCall
from ..core.scores import first_seen_key


@dataclass(frozen=True)
class Block:
    """Where a query block sits: absolute query positions and each batch row's first key."""

    q_pos: torch.Tensor  # [q] absolute position of each query in the block
    start: torch.Tensor  # [B] first non-padding key of each batch row (the sink token), a key index
    k_pos: torch.Tensor | None = None  # [K] absolute position of each key; None for cross-attention
    site: object = None


def on_heads(call: AttnCall, q_start: int, probs: torch.Tensor, heads, rule) -> torch.Tensor:
    """Apply `rule` to the selected heads of probs [B, H, q, K]; other heads are untouched.

    The rule gets visible as bool [B|1, 1, q, K] (it broadcasts over heads). When every
    head is selected no copy of the selection is made.
    """
    idx = heads.index(call.layer, call.num_heads, call.site.name)
    if idx is None:
        return probs
    q = probs.shape[2]
    visible = call.visible(q_start, q_start + q)  # [B|1, 1|H, q, K]
    if visible.shape[1] != 1:
        visible = visible.index_select(1, idx.to(visible.device))
    k_pos = call.k_positions() if call.positional else None
    block = Block(call.q_positions(q_start, q_start + q), first_seen_key(call), k_pos, call.site)
    every = len(idx) == call.num_heads
    old = probs if every else probs.index_select(1, idx.to(probs.device))  # [B, h, q, K]
    new = rule(old, visible, block)
    seen_any = visible.any(-1, keepdim=True)  # [B|1, 1, q, 1]
    if not bool(seen_any.all()):
        new = torch.where(seen_any, new, old)
    if every:
        return new
    if probs.requires_grad:
        return probs.index_copy(1, idx.to(probs.device), new)
    probs[:, idx.to(probs.device)] = new  # in place: the kernel made this tensor for this call only
    return probs


def renormalise(probs: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """probs [.., K] zeroed on hidden keys and rescaled to sum to 1 over the visible ones
    (visible broadcasts against probs)."""
    probs = probs * visible
    return probs / probs.sum(-1, keepdim=True).clamp_min(torch.finfo(probs.dtype).tiny)


def key_mask(block: Block, shape, positions_fn) -> torch.Tensor:
    """bool [B|1, 1, q, K] (broadcasts over heads) from positions_fn(k_pos [K], q_pos [q, 1],
    start [B, 1, 1, 1]) on absolute positions (a sliding-window cache's keys start late).
    Cross-attention has no shared positions: a position rule there is an error."""
    if block.k_pos is None:
        raise ValueError(f"{block.site}: a position rule (recency, identity_mix) does not apply to "
                         "cross-attention; select self-attention heads (e.g. layers=decoder:0-5)")
    start = block.k_pos[block.start].view(-1, 1, 1, 1)  # first real key's position per row
    hit = positions_fn(block.k_pos, block.q_pos[:, None], start)
    return hit if hit.dim() == 4 else hit[None, None]


def check_positive(name: str, **values) -> None:
    """Raise ValueError naming the modifier if any value is not a finite number > 0."""
    for key, value in values.items():
        if not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
            raise ValueError(f"{name}: {key} must be a number > 0, got {value!r}")


def check_fraction(name: str, **values) -> None:
    """Raise ValueError naming the modifier if any value is outside [0, 1]."""
    for key, value in values.items():
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{name}: {key} must be in [0, 1], got {value!r}")
