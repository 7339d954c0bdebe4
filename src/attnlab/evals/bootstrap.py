"""Bootstrap confidence intervals for accuracy and for paired accuracy differences.

Percentile bootstrap over items (resampled with replacement, fixed seed). The paired
version resamples the same item indices for both runs, so the interval is for the
difference on the same questions, which is far tighter than two independent intervals.
"""

from __future__ import annotations

import numpy as np


def accuracy_ci(correct, n_boot: int = 10_000, level: float = 0.95, seed: int = 0) -> dict:
    """{'acc', 'lo', 'hi', 'n'} for a list of booleans (one per item)."""
    x = np.asarray(correct, dtype=float)
    if x.size == 0:
        raise ValueError("accuracy_ci: no items")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    lo, hi = _percentiles(x[idx].mean(1), level)
    return {"acc": float(x.mean()), "lo": lo, "hi": hi, "n": int(x.size)}


def paired_delta_ci(steered, baseline, n_boot: int = 10_000, level: float = 0.95, seed: int = 0) -> dict:
    """{'delta', 'lo', 'hi', 'n', 'p_not_better'}: accuracy(steered) - accuracy(baseline), paired.

    p_not_better: share of bootstrap resamples whose delta is <= 0 (a one-sided bootstrap p).
    """
    a = np.asarray(steered, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired_delta_ci: need two equal, non-empty lists, got {a.size} and {b.size}")
    d = a - b
    idx = np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))
    boot = d[idx].mean(1)
    lo, hi = _percentiles(boot, level)
    return {"delta": float(d.mean()), "lo": lo, "hi": hi, "n": int(d.size),
            "p_not_better": float((boot <= 0).mean())}


def _percentiles(values, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)
