"""`recency` (LocoRE-like): boost the attention from each query to its last r tokens.

Keys at positions q - r + 1 .. q (the query itself and its r - 1 predecessors) get their
probability multiplied by `boost`, then the row is renormalised over its visible keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import check_positive, key_mask, on_heads, renormalise
from .heads import Heads, select


@dataclass(frozen=True)
class Recency:
    boost: float
    window: int
    heads: Heads

    def probs(self, call, q_start, probs):  # probs [B, H, q, K] fp32
        return on_heads(call, q_start, probs, self.heads, self._rule)

    def _rule(self, probs, visible, block):  # [B, h, q, K]
        near = key_mask(block, probs.shape, lambda k, q, start: (k <= q) & (k > q - self.window))
        weight = 1.0 + (self.boost - 1.0) * near.to(probs.dtype)
        return renormalise(probs * weight, visible)

    def describe(self) -> str:
        return f"recency x{self.boost} on last {self.window} on {self.heads.describe()}"


def recency(boost: float, window: int = 4, layers=None, heads=None) -> Recency:
    """Multiply the selected heads' attention on the last `window` tokens by `boost` > 0, renormalise."""
    check_positive("recency", boost=boost)
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"recency: window must be an integer >= 1, got {window!r}")
    return Recency(float(boost), window, heads if isinstance(heads, Heads) else select(layers, heads))
