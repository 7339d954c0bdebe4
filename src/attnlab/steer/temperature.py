"""`temperature`: a per-head softmax temperature (scores / T before the softmax)."""

from __future__ import annotations

from dataclasses import dataclass

from .common import check_positive
from .heads import Heads, select


@dataclass(frozen=True)
class Temperature:
    """Divides the selected heads' visible scores by `t` (t < 1 sharpens, t > 1 flattens)."""

    t: float
    heads: Heads

    def scores(self, call, q_start, scores):  # scores [B, H, q, K] fp32, hidden keys at the dtype minimum
        idx = self.heads.index(call.layer, call.num_heads, call.site.name)
        if idx is None:
            return scores
        idx = idx.to(scores.device)
        q = scores.shape[2]
        visible = call.visible(q_start, q_start + q).expand(scores.shape[0], call.num_heads, q, scores.shape[3])
        sub = scores.index_select(1, idx)  # [B, h, q, K]
        sub = sub.where(~visible.index_select(1, idx), sub / self.t)  # hidden keys keep their floor
        return scores.index_copy(1, idx, sub)

    def describe(self) -> str:
        return f"temperature {self.t} on {self.heads.describe()}"


def temperature(t: float, layers=None, heads=None) -> Temperature:
    """Softmax temperature `t` > 0 for the selected heads."""
    check_positive("temperature", t=t)
    return Temperature(float(t), heads if isinstance(heads, Heads) else select(layers, heads))
