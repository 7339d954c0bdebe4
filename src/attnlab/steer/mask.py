"""`mask`: zero the output of chosen heads (head ablation), on any kernel."""

from __future__ import annotations

from dataclasses import dataclass

from .heads import Heads, select


@dataclass(frozen=True)
class Mask:
    """Zeroes the selected heads' attention output [B, Q, H, Dv] (before the o-projection)."""

    heads: Heads

    def output(self, call, output):  # output [B, Q, H, Dv]
        idx = self.heads.index(call.layer, call.num_heads)
        if idx is None:
            return output
        output = output.clone()
        output[:, :, idx.to(output.device)] = 0
        return output

    def describe(self) -> str:
        return f"mask {self.heads.describe()}"


def mask(layers=None, heads=None) -> Mask:
    """Ablate heads: their output becomes zero. Works with every kernel (output level)."""
    return Mask(heads if isinstance(heads, Heads) else select(layers, heads))
