"""`gates`: JoLA-style Hard-Concrete gates deciding which heads get an edit (Louizos et al. 2018).

Each gate g = min(1, max(0, s * (zeta - gamma) + gamma)) with, in training,
s = sigmoid((log u - log(1 - u) + log_alpha) / beta), u ~ U(0, 1), and at evaluation
s = sigmoid(log_alpha) (deterministic, exactly 0 for strongly closed gates).
The expected L0 norm (penalty) is sum sigmoid(log_alpha - beta * log(-gamma / zeta)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


class HardConcrete(nn.Module):
    """Gates of shape `shape` (e.g. [n heads, 2]); calling it returns their values in [0, 1]."""

    def __init__(self, shape, init_open: float = 0.9):
        super().__init__()
        p = min(max(init_open, 1e-3), 1 - 1e-3)
        self.log_alpha = nn.Parameter(torch.full(tuple(shape), math.log(p / (1 - p))))

    def forward(self) -> torch.Tensor:
        if self.training:
            u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / BETA)
        else:
            s = torch.sigmoid(self.log_alpha)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def l0(self) -> torch.Tensor:
        """Expected number of open gates (differentiable)."""
        return torch.sigmoid(self.log_alpha - BETA * math.log(-GAMMA / ZETA)).sum()

    def open_mask(self) -> torch.Tensor:
        """Bool [shape]: gates that are non-zero at evaluation."""
        with torch.no_grad():
            return (torch.sigmoid(self.log_alpha) * (ZETA - GAMMA) + GAMMA) > 0
