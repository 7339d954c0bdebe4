"""`train()`: one call from a model and a task to a trained, evaluated, saveable adapter."""

from __future__ import annotations

import random

from ..errors import OptionError
from .loop import LoopConfig, fit
from .methods import METHODS, build

LR = {"lofit": 5e-3, "gates": 5e-3, "head_lora": 1e-3, "lora": 1e-3, "ia3": 5e-3}
L1, L0 = 1e-3, 1e-3  # LoFiT step-1 L1 weight on |a_h|; gates' L0 weight (per expected open gate)


def check_train(method: str, heads, steps: int, batch_size: int) -> None:
    """OptionError for a bad method or budget (before any work)."""
    if method not in METHODS:
        raise OptionError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if steps < 2 or batch_size < 1:
        raise OptionError(f"--steps must be >= 2 and --batch-size >= 1, got {steps} and {batch_size}")


def choose_heads(model, tok, sites, rows, dev, heads, select: str, cfg: LoopConfig, show: bool, l1: float = L1,
                 checkpoint=None):
    """The heads to tune and, for select='lofit', the step-1 history: (heads, info).

    heads: '3%' / '12' (a budget) or 'layer:head;...' (by hand). select: 'lofit' (train
    scalings a_h on all heads with an L1 penalty, keep the top-K |a_h|), 'random' (seeded),
    or 'kind:COLUMN' (the head taxonomy: the top-K heads by a column of
    `attnlab.head_kinds(model, tok)`, e.g. kind:retrieval, kind:induction, kind:sink_mass;
    the probe columns run the probes).
    checkpoint: step 1's checkpoint file (resumed from when present, like the edit step's).
    """
    from .sites import all_heads, head_budget, parse_heads

    if ":" in str(heads):
        return parse_heads(str(heads), sites), {"select": "manual"}
    every = all_heads(sites)
    k = head_budget(heads, len(every))
    if select == "random":
        return sorted(random.Random(cfg.seed).sample(every, k)), {"select": "random", "k": k}
    if select.startswith("kind:"):
        return _by_kind(model, tok, every, k, select[len("kind:"):])
    if select != "lofit":
        raise OptionError(f"unknown head selection {select!r}; valid: lofit, random, kind:COLUMN")
    scales = build("lofit_scales", model, sites, every)
    hist = fit(model, tok, scales, rows, dev, cfg, penalty=lambda: l1 * scales.module.scale.abs().sum(), show=show,
               checkpoint=checkpoint)
    norm = scales.module.scale.detach().abs().sum(-1)  # [n heads] |a_h|
    top = norm.topk(k).indices.tolist()
    info = {"select": "lofit", "k": k, "history": hist,
            "scores": {":".join(map(str, every[i])): float(norm[i]) for i in range(len(every))}}
    return sorted(every[i] for i in top), info


PROBE_COLUMNS = ("induction", "prev_token_probe", "retrieval")


def check_select(select: str) -> None:
    """OptionError for a head selection that cannot work (before any model loads)."""
    if select in ("lofit", "random"):
        return
    if not select.startswith("kind:") or not select[len("kind:"):]:
        raise OptionError(f"unknown head selection {select!r}; valid: lofit, random, kind:COLUMN "
                          "(e.g. kind:retrieval, kind:induction, kind:sink_mass)")


def _by_kind(model, tok, every: list, k: int, column: str):
    """The top-k heads by a head_kinds() column (NaN last): (heads, info with every head's score)."""
    import math

    from ..observe.kinds import head_kinds

    kinds = head_kinds(model, tok, probes=column in PROBE_COLUMNS)
    if column not in kinds.columns or kinds[column].dtype.kind not in "fiub":
        numeric = [c for c in kinds.columns if kinds[c].dtype.kind in "fiub" and c not in ("layer", "head")]
        raise OptionError(f"kind:{column}: no such numeric head statistic; valid: {', '.join(numeric)}")
    rows = {(str(r.stack), int(r.layer), int(r.head)): r for r in kinds.itertuples()}
    score = {h: float(getattr(rows[h], column)) if h in rows else float("nan") for h in every}
    known = sorted((h for h in every if not math.isnan(score[h])), key=lambda h: (-score[h], h))
    chosen = sorted((known + [h for h in every if math.isnan(score[h])])[:k])
    info = {"select": f"kind:{column}", "k": k,
            "scores": {":".join(map(str, h)): (None if math.isnan(v) else v) for h, v in score.items()},
            "kinds": {":".join(map(str, h)): str(rows[h].kind) for h in every if h in rows}}
    return chosen, info


def _penalty(adapter, l0: float):
    if adapter.method == "gates":
        return lambda: l0 * adapter.module.gates.l0()
    return None


def _open_heads(adapter) -> list:
    """Gates: heads with an open multiplicative or additive gate at evaluation."""
    mask = adapter.module.gates.open_mask()  # [n, 2]
    return [list(h) + [bool(m[0]), bool(m[1])] for h, m in zip(adapter.heads, mask.tolist()) if any(m)]


def train(model, tok, task: str, method: str = "lofit", heads="3%", steps: int = 150, seed: int = 0,
          lr: float | None = None, batch_size: int = 8, kernel: str = "sdpa", select: str = "lofit",
          train_items: int | None = None, dev_items: int = 64, test_items: int | None = 300,
          max_prompt: int | None = 128, checkpoint_dir=None, show: bool = True, baseline=None,
          **options):
    """Train a head-level adapter (or a PEFT baseline) on `task`; returns the evaluated `Adapter`.

    method: lofit | gates | head_lora | lora | ia3. heads: a budget ('3%', 12) or explicit
    'layer:head;...' (lofit, head_lora; gates uses all heads; lora / ia3 ignore it).
    steps: optimizer steps in total; lofit and budgeted head_lora spend the first half
    selecting heads (step 1) and the second half on the edit. options: keep_scale (lofit),
    rank / targets (head_lora 'q,k,v,o', lora 'q,v'), l1, l0. baseline: zero-shot Scores of
    the test items when already computed. adapter.meta holds everything adapter.json records.
    """
    from .data import encode_answers, task_splits

    check_train(method, heads, steps, batch_size)
    splits = task_splits(task, train_items, test_items)
    rows = encode_answers(tok, splits.train, max_prompt)
    dev = splits.dev[:dev_items]
    cfg = LoopConfig(steps=steps, lr=lr or LR[method], batch_size=batch_size, seed=seed, kernel=kernel)
    ckpt = None if checkpoint_dir is None else f"{checkpoint_dir}/checkpoint.pt"
    select_ckpt = None if checkpoint_dir is None else f"{checkpoint_dir}/checkpoint_select.pt"
    sites, chosen, info = _heads_for(model, tok, method, heads, select, rows, dev, cfg, show, options, select_ckpt)
    built = {k: v for k, v in options.items() if k in ("keep_scale", "rank", "targets")}
    adapter = build(method, model, sites, chosen, **built)
    used = max(1, steps // 2) if info.get("select") == "lofit" else 0  # step 1 of lofit spent these
    step2 = LoopConfig(**{**cfg.as_dict(), "steps": steps - used})
    hist = fit(model, tok, adapter, rows, dev, step2, penalty=_penalty(adapter, options.get("l0", L0)),
               checkpoint=ckpt, show=show)
    adapter.meta = _meta(model, task, method, heads, splits, cfg, step2, options, info, hist, adapter)
    adapter.meta["splits"]["dev_used"] = len(dev)
    if method == "gates":
        adapter.meta["open_heads"] = _open_heads(adapter)
    adapter.meta["test"] = _test(model, tok, adapter, splits.test, kernel, baseline)
    return adapter


def _heads_for(model, tok, method, heads, select, rows, dev, cfg, show, options, checkpoint=None):
    """(sites, heads to build the adapter on, selection info) for `method`."""
    from .sites import all_heads, head_sites

    sites = head_sites(model)
    if method in ("lora", "ia3"):
        return sites, [], {"select": "none"}
    if method == "gates":
        return sites, all_heads(sites), {"select": "gates"}
    half = LoopConfig(**{**cfg.as_dict(), "steps": max(1, cfg.steps // 2), "lr": LR["lofit"]})
    chosen, info = choose_heads(model, tok, sites, rows, dev, heads, select, half, show, options.get("l1", L1),
                                checkpoint)
    return sites, chosen, info


def _meta(model, task, method, heads, splits, cfg, step2, options, info, hist, adapter) -> dict:
    from .saved import model_hash

    sel = {k: v for k, v in info.items() if k != "history"}
    return {"base_model": model.config._name_or_path, "base_hash": model_hash(model),
            "base_class": type(model).__name__, "task": task, "heads_spec": str(heads),
            "splits": {"hashes": splits.hashes(), "sizes": splits.sizes()},
            "hyper": {"loop": cfg.as_dict(), "edit_steps": step2.steps, **options},
            "selection": sel, "selection_history": info.get("history"), "history": hist,
            "trainable_params": adapter.num_trainable(), "dev_acc": hist["best_dev"]}


def _test(model, tok, adapter, items, kernel, baseline) -> dict:
    """Zero-shot vs tuned test accuracy with the paired bootstrap CI (the evaluator's summarize)."""
    from ..evals.run import summarize
    from ..evals.scoring import score

    base = baseline if baseline is not None else score(model, tok, items, (), kernel)
    tuned = score(model, tok, items, [adapter], kernel)
    return summarize(items, base, tuned)
