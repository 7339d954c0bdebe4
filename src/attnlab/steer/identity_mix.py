"""`identity_mix` (SoftPAG): A' = (1 - t) A + t I, each query pulled toward itself."""

from __future__ import annotations

from dataclasses import dataclass

from .common import check_fraction, key_mask, on_heads
from .heads import Heads, select


@dataclass(frozen=True)
class IdentityMix:
    t: float
    heads: Heads

    def probs(self, call, q_start, probs):  # probs [B, H, q, K] fp32
        return on_heads(call, q_start, probs, self.heads, self._rule)

    def _rule(self, probs, visible, block):  # [B, h, q, K]
        eye = key_mask(block, probs.shape, lambda k, q, start: k == q) & visible
        # a query that cannot see itself (never in causal self-attention) keeps its row
        has_self = eye.any(-1, keepdim=True)
        mixed = (1.0 - self.t) * probs + self.t * eye.to(probs.dtype)
        return mixed.where(has_self, probs)

    def describe(self) -> str:
        return f"identity_mix t={self.t} on {self.heads.describe()}"


def identity_mix(t: float, layers=None, heads=None) -> IdentityMix:
    """Interpolate the selected heads' maps toward identity by t in [0, 1] (1 = each token copies itself)."""
    check_fraction("identity_mix", t=t)
    return IdentityMix(float(t), heads if isinstance(heads, Heads) else select(layers, heads))
