"""Evaluate a task with and without modifiers on the same items, paired.

`evaluate()` is what `attnlab eval` calls: baseline and steered runs share the kernel
(eager whenever a modifier needs probabilities, so the only difference between the two
runs is the modifiers), and the steered-minus-baseline accuracy comes with a paired
bootstrap interval.
"""

from __future__ import annotations

from ..errors import OptionError, SpecError
from .bootstrap import accuracy_ci, paired_delta_ci
from .scoring import NORMS, score
from .tasks import SPLITS, chance, load_task


def _needs_probs(modifier) -> bool:
    return any(callable(getattr(modifier, k, None)) for k in ("scores", "probs"))


def pick_kernel(modifiers, kernel: str | None) -> str:
    """The kernel spec to run: as given, else eager if any modifier changes scores/probs, else sdpa."""
    if kernel is not None:
        return kernel
    return "eager" if any(_needs_probs(m) for m in modifiers) else "sdpa"


def check_kernel(kernel: str | None, modifiers=()) -> None:
    """SpecError for a bad kernel spec ('eager:block_size=256') or one that cannot serve the
    modifiers (a probability-level modifier on a kernel without probabilities)."""
    from ..kernels import KERNELS, get_kernel, parse_spec

    if kernel is None:
        return
    name, _ = parse_spec(kernel)
    needing = sorted({type(m).__name__ for m in modifiers if _needs_probs(m)})
    if needing and not get_kernel(name).exposes_probs:
        valid = ", ".join(sorted(n for n, k in KERNELS.items() if k.exposes_probs))
        raise SpecError(f"kernel {name!r} does not expose attention scores/probabilities, which "
                        f"{', '.join(needing)} need; use one of: {valid}")


def check_options(split: str = "all", norm: str = "sum", limit: int | None = None) -> None:
    """OptionError for a bad split, normalisation or limit (before any model is loaded)."""
    if split not in SPLITS:
        raise OptionError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if norm not in NORMS:
        raise OptionError(f"unknown normalisation {norm!r}; valid: {', '.join(NORMS)}")
    if limit is not None and limit < 1:
        raise OptionError(f"--limit must be >= 1, got {limit}")


def check_stacks(modifiers, specs, model) -> None:
    """SpecError when a modifier selects heads by the short form (layers=0-5, heads=3:1) on
    a model with several stacks (encoder-decoder): it would not say which stack is meant.
    Told before any scoring (the selection itself only notices at the second stack)."""
    from ..observe.heads import site_layers

    names = list(site_layers(model))
    if len(names) < 2:
        return
    for mod, spec in zip(modifiers, list(specs) + [None] * len(modifiers)):
        heads = getattr(mod, "heads", None)
        chosen = list(getattr(heads, "layers", None) or ()) + list(getattr(heads, "pairs", None) or ())
        if any(t[0] is None for t in chosen):
            raise SpecError(f"modifier {spec or type(mod).__name__!r}: this model has several attention stacks "
                            f"({', '.join(names)}); name the stack, e.g. heads={names[-1]}:0:1 or "
                            f"layers={names[0]}:0-1")


def summarize(items, base, steered=None, norm: str = "sum") -> dict:
    """Accuracy (+ CI) of the baseline Scores, and of the steered ones with the paired delta."""
    if norm not in NORMS:
        raise OptionError(f"unknown normalisation {norm!r}; valid: {', '.join(NORMS)}")
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
             norm: str = "sum", kernel: str | None = None, batch_size: int = 16, progress=None,
             items=None) -> dict:
    """Baseline (and, with modifiers, steered) accuracy on `task`, paired on the same items.

    kernel: a kernel spec ('eager', 'eager:block_size=256'; default: see pick_kernel).
    specs: the modifiers' text forms, only recorded in the result. progress: optional
    callable(stage, done, total), stage 'baseline' or 'steered'. items: the task's items
    when already loaded (load_task(task, split, limit)).
    """
    check_stacks(modifiers, specs, model)
    items = load_task(task, split=split, limit=limit) if items is None else items
    kernel = pick_kernel(modifiers, kernel)
    step = (lambda stage: (lambda d, t: progress(stage, d, t))) if progress else (lambda stage: None)
    base = score(model, tokenizer, items, (), kernel, batch_size, step("baseline"))
    steered = score(model, tokenizer, items, modifiers, kernel, batch_size, step("steered")) if modifiers else None
    result = {"task": task, "split": split, "kernel": kernel, "modifiers": list(specs)}
    result.update(summarize(items, base, steered, norm))
    return result
