"""Greedy head/parameter search (HeadHunter style) on a dev split, judged on a held-out split.

Start from no modifier. At each step try every candidate (a modifier spec on a group of
layers) added to the current set, on the dev items; keep the one with the best dev
accuracy (ties: higher mean log-probability of the right choice among the choices) if
it beats the current set's accuracy, and stop when none does or after `steps`. The
chosen set is then evaluated once on the test split, which the search never saw, paired
against the baseline on the same test items.
"""

from __future__ import annotations

from .bootstrap import accuracy_ci
from .run import summarize
from .scoring import score
from .tasks import load_task

METHODS = {
    "sink_scale": ("factor=0.5", "factor=2.0"),
    "calibrate": ("factor=0.4,threshold=5",),
}


def candidates(num_layers, group: int = 5, methods=None) -> list[str]:
    """Specs to try: each method x parameter setting x block of `group` consecutive layers (and all).

    num_layers: an int (one stack: short layer forms "0-4"), or {stack: layers} for a model
    with several stacks: blocks named by stack ("encoder:0-4"), self-attention stacks only
    (the sink rules of sink_scale / calibrate need key positions, which cross-attention
    keys lack), and "all" = every layer of those stacks.
    """
    methods = METHODS if methods is None else methods
    if isinstance(num_layers, dict):
        stacks = {s: n for s, n in num_layers.items() if not s.endswith(".cross")}
        every = ";".join(f"{s}:0-{n - 1}" for s, n in stacks.items())
    else:
        stacks, every = {"": num_layers}, "all"
    blocks = [f"{s + ':' if s else ''}{a}-{min(a + group, n) - 1}" for s, n in stacks.items()
              for a in range(0, n, group)] + [every]
    return [f"{name}:{params},layers={b}" for name, settings in methods.items() for params in settings for b in blocks]


def _objective(scores, items, norm: str) -> tuple[float, float]:
    correct = scores.correct(items, norm)
    margin = scores.margin(items)
    return sum(correct) / len(items), sum(margin) / len(margin)


def greedy(model, tokenizer, dev, specs, parse, steps: int = 2, norm: str = "sum", batch_size: int = 16,
           progress=None) -> dict:
    """Greedy selection of specs on the dev items; returns the chosen specs and the trace.

    parse: spec -> modifier. progress: optional callable(step, done, total).
    """
    base = score(model, tokenizer, dev, (), "eager", batch_size)
    best = _objective(base, dev, norm)
    chosen, trace = [], [{"step": 0, "chosen": [], "dev_acc": best[0], "dev_margin": best[1]}]
    for step in range(1, steps + 1):
        tried = []
        for k, spec in enumerate(s for s in specs if s not in chosen):
            mods = [parse(s) for s in chosen + [spec]]
            tried.append((_objective(score(model, tokenizer, dev, mods, "eager", batch_size), dev, norm), spec))
            if progress:
                progress(step, k + 1, len(specs) - len(chosen))
        top, spec = max(tried, key=lambda t: t[0])
        trace.append({"step": step, "tried": [{"spec": s, "dev_acc": o[0], "dev_margin": o[1]} for o, s in tried]})
        if top[0] <= best[0]:
            break
        best, chosen = top, chosen + [spec]
        trace[-1].update({"chosen": list(chosen), "dev_acc": top[0], "dev_margin": top[1]})
    return {"chosen": chosen, "dev_baseline": accuracy_ci(base.correct(dev, norm)), "dev_acc": best[0], "trace": trace}


def search(model, tokenizer, task: str, parse, steps: int = 2, limit: int | None = None, norm: str = "sum",
           methods=None, group: int = 5, batch_size: int = 16, progress=None) -> dict:
    """Search on the dev split of `task`, then report the chosen modifiers on the test split.

    limit caps the items of each split. Returns the search trace, the chosen specs and the
    paired test-split comparison (baseline vs chosen).
    """
    dev = load_task(task, split="dev", limit=limit)
    test = load_task(task, split="test", limit=limit)
    from ..observe.heads import site_layers

    stacks = site_layers(model) if hasattr(model, "named_modules") else {}  # a stand-in model: one stack
    specs = candidates(stacks if len(stacks) > 1 else model.config.num_hidden_layers, group, methods)
    found = greedy(model, tokenizer, dev, specs, parse, steps, norm, batch_size, progress)
    base = score(model, tokenizer, test, (), "eager", batch_size)
    steered = score(model, tokenizer, test, [parse(s) for s in found["chosen"]], "eager", batch_size) if found["chosen"] else None
    result = {"task": task, "n_dev": len(dev), "n_candidates": len(specs), "kernel": "eager", **found}
    result["test"] = summarize(test, base, steered, norm)
    return result
