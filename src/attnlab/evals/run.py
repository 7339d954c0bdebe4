"""Evaluate a task with and without modifiers on the same items, paired.

`evaluate()` is what `attnlab eval` calls: baseline and steered runs share the kernel
(eager whenever a modifier needs probabilities, so the only difference between the two
runs is the modifiers), and the steered-minus-baseline accuracy comes with a paired
bootstrap interval.
"""

from __future__ import annotations

from .bootstrap import accuracy_ci, paired_delta_ci
from .scoring import NORMS, score
from .tasks import chance, load_task


def pick_kernel(modifiers, kernel: str | None) -> str:
    """The kernel to run: as given, else eager if any modifier changes scores/probs, else sdpa."""
    if kernel is not None:
        return kernel
    needs = any(callable(getattr(m, k, None)) for m in modifiers for k in ("scores", "probs"))
    return "eager" if needs else "sdpa"


def summarize(items, base, steered=None, norm: str = "sum") -> dict:
    """Accuracy (+ CI) of the baseline Scores, and of the steered ones with the paired delta."""
    if norm not in NORMS:
        raise ValueError(f"unknown normalisation {norm!r}; valid: {', '.join(NORMS)}")
    b = base.correct(items, norm)
    out = {"n": len(items), "chance": chance(items), "norm": norm, "baseline": accuracy_ci(b)}
    if steered is not None:
        s = steered.correct(items, norm)
        out["steered"] = accuracy_ci(s)
        out["delta"] = paired_delta_ci(s, b)
        out["changed"] = {"fixed": sum(x and not y for x, y in zip(s, b)),
                          "broken": sum(y and not x for x, y in zip(s, b))}
    return out


def evaluate(model, tokenizer, task: str, modifiers=(), specs=(), split: str = "all", limit: int | None = None,
             norm: str = "sum", kernel: str | None = None, batch_size: int = 16, progress=None) -> dict:
    """Baseline (and, with modifiers, steered) accuracy on `task`, paired on the same items.

    specs: the modifiers' text forms, only recorded in the result. progress: optional
    callable(stage, done, total), stage 'baseline' or 'steered'.
    """
    items = load_task(task, split=split, limit=limit)
    kernel = pick_kernel(modifiers, kernel)
    step = (lambda stage: (lambda d, t: progress(stage, d, t))) if progress else (lambda stage: None)
    base = score(model, tokenizer, items, (), kernel, batch_size, step("baseline"))
    steered = score(model, tokenizer, items, modifiers, kernel, batch_size, step("steered")) if modifiers else None
    result = {"task": task, "split": split, "kernel": kernel, "modifiers": list(specs)}
    result.update(summarize(items, base, steered, norm))
    return result
