"""`sink_scale` (ZeroTuning): scale the attention on the first token, renormalise.

For each selected head and query, the probability on the row's first real key (the
attention sink; the first non-padding token) is multiplied by `factor` and the row is
renormalised over its visible keys: factor < 1 gives the freed mass to the other tokens
in proportion to their attention (a sharper distribution over content), factor > 1
takes mass from them (a flatter one).
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import check_positive, on_heads
from .heads import Heads, select


@dataclass(frozen=True)
class SinkScale:
    factor: float
    heads: Heads

    def probs(self, call, q_start, probs):  # probs [B, H, q, K] fp32
        return on_heads(call, q_start, probs, self.heads, self._rule)

    def _rule(self, probs, visible, block):  # [B, h, q, K]
        B, h, q, _ = probs.shape
        at = block.start.view(-1, 1, 1, 1).expand(B, h, q, 1)
        sink = probs.gather(-1, at)  # [B, h, q, 1]; 0 where the row cannot see it
        # rows already sum to 1 over visible keys (hidden ones are exactly 0), so the new
        # row sum is 1 + (factor - 1) * sink: two passes over the block instead of a mask
        new = probs / (1.0 + (self.factor - 1.0) * sink)
        return new.scatter(-1, at, sink * self.factor / (1.0 + (self.factor - 1.0) * sink))

    def describe(self) -> str:
        return f"sink_scale x{self.factor} on {self.heads.describe()}"


def sink_scale(factor: float, layers=None, heads=None) -> SinkScale:
    """Scale the selected heads' attention to the first token by `factor` > 0 and renormalise."""
    check_positive("sink_scale", factor=factor)
    return SinkScale(float(factor), heads if isinstance(heads, Heads) else select(layers, heads))
