"""`mask`: zero the output of chosen heads (head ablation), on any kernel."""

from __future__ import annotations

from dataclasses import dataclass

from .heads import Heads, scale_output, select


@dataclass(frozen=True)
class Mask:
    """Zeroes the selected heads' attention output [B, Q, H, Dv] (before the o-projection)."""

    heads: Heads

    def output(self, call, output):  # output [B, Q, H, Dv]
        return scale_output(self.heads, call, output, 0.0)

    def describe(self) -> str:
        return f"mask {self.heads.describe()}"


def mask(layers=None, heads=None) -> Mask:
    """Ablate heads: their output becomes zero. Works with every kernel (output level)."""
    return Mask(heads if isinstance(heads, Heads) else select(layers, heads))
