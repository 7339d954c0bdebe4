"""`sink_scale` (ZeroTuning): scale the attention on the first token, renormalise.

For each selected head and query, the probability on the row's first real key (the
attention sink; the first non-padding token) is multiplied by `factor` and the row is
renormalised over its visible keys: factor < 1 gives the freed mass to the other tokens
in proportion to their attention (a sharper distribution over content), factor > 1
takes mass from them (a flatter one).
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import check_positive, key_mask, on_heads, renormalise
from .heads import Heads, select


@dataclass(frozen=True)
class SinkScale:
    factor: float
    heads: Heads

    def probs(self, call, q_start, probs):  # probs [B, H, q, K] fp32
        return on_heads(call, q_start, probs, self.heads, self._rule)

    def _rule(self, probs, visible, block):  # [B, h, q, K]
        sink = key_mask(block, probs.shape, lambda k, q, start: k == start)
        weight = 1.0 + (self.factor - 1.0) * sink.to(probs.dtype)
        return renormalise(probs * weight, visible)

    def describe(self) -> str:
        return f"sink_scale x{self.factor} on {self.heads.describe()}"


def sink_scale(factor: float, layers=None, heads=None) -> SinkScale:
    """Scale the selected heads' attention to the first token by `factor` > 0 and renormalise."""
    check_positive("sink_scale", factor=factor)
    return SinkScale(float(factor), heads if isinstance(heads, Heads) else select(layers, heads))
