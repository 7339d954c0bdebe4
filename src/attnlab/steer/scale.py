"""`scale`: multiply the output of chosen heads by a factor, on any kernel."""

from __future__ import annotations

from dataclasses import dataclass

from .heads import Heads, scale_output, select


@dataclass(frozen=True)
class Scale:
    """Multiplies the selected heads' attention output [B, Q, H, Dv] by `factor`."""

    factor: float
    heads: Heads

    def output(self, call, output):  # output [B, Q, H, Dv]
        return scale_output(self.heads, call, output, self.factor)

    def describe(self) -> str:
        return f"scale x{self.factor} on {self.heads.describe()}"


def scale(factor: float, layers=None, heads=None) -> Scale:
    """Scale heads' outputs by `factor` (0 = mask, 1 = unchanged). Output level: any kernel."""
    if not isinstance(factor, (int, float)):
        raise ValueError(f"scale: factor must be a number, got {factor!r}")
    return Scale(float(factor), heads if isinstance(heads, Heads) else select(layers, heads))
