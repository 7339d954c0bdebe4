"""`calibrate` (ACT-style attention calibration), per input and on the fly.

In each selected head, every query row finds its "sink" keys: keys whose probability is
above `threshold` times uniform (threshold / number of visible keys). The row's first
real token is left alone unless `include_first`. Each sink keeps `factor` of its
probability; the freed mass goes to the row's other visible keys in proportion to their
attention (ACT's redistribution), so rows still sum to 1.

ACT picks sinks from the attention a key receives averaged over all queries of a head;
here the test is per query row, so it works on query blocks and in decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .common import check_fraction, check_positive, key_mask, on_heads
from .heads import Heads, select


@dataclass(frozen=True)
class Calibrate:
    factor: float
    threshold: float
    include_first: bool
    heads: Heads

    def probs(self, call, q_start, probs):  # probs [B, H, q, K] fp32
        return on_heads(call, q_start, probs, self.heads, self._rule)

    def _rule(self, probs, visible, block):  # [B, h, q, K]
        n_visible = visible.sum(-1, keepdim=True).clamp_min(1)  # [B, h, q, 1]
        sinks = visible & (probs > self.threshold / n_visible)
        if not self.include_first:
            sinks &= ~key_mask(block, probs.shape, lambda k, q, start: k == start)
        others = visible & ~sinks
        freed = ((1.0 - self.factor) * probs * sinks).sum(-1, keepdim=True)  # [B, h, q, 1]
        rest = (probs * others).sum(-1, keepdim=True)
        gain = torch.where(rest > 0, 1.0 + freed / rest.clamp_min(torch.finfo(probs.dtype).tiny), 1.0)
        new = torch.where(sinks, probs * self.factor, probs * gain)
        # a row whose visible mass is all sinks has nowhere to send it: keep it
        return new.where(rest > 0, probs)

    def describe(self) -> str:
        first = ", first token too" if self.include_first else ""
        return f"calibrate x{self.factor} above {self.threshold}/n{first} on {self.heads.describe()}"


def calibrate(factor: float = 0.4, threshold: float = 5.0, include_first: bool = False,
              layers=None, heads=None) -> Calibrate:
    """Lower attention sinks (p > threshold / n_visible) to `factor` of their weight, redistribute."""
    check_fraction("calibrate", factor=factor)
    check_positive("calibrate", threshold=threshold)
    return Calibrate(float(factor), float(threshold), bool(include_first),
                     heads if isinstance(heads, Heads) else select(layers, heads))
