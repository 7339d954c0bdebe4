"""THE training loop: AdamW, warmup + cosine schedule, gradient clipping, seeds, a rich
progress bar (loss, tokens/s), early stopping on dev accuracy, resumable checkpoints.

The base model is frozen (requires_grad restored afterwards); only the adapter's own
parameters train. Every step runs inside attach(model, kernel, modify=[adapter]), so the
adapter acts exactly as it will at evaluation.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .data import answer_nll, collate


@dataclass
class LoopConfig:
    """steps: optimizer steps; eval_every: steps between dev evaluations (0 = only at the end);
    patience: dev evaluations without improvement before stopping (0 = never stop early)."""

    steps: int = 150
    lr: float = 5e-3
    batch_size: int = 8
    warmup: float = 0.1
    clip: float = 1.0
    weight_decay: float = 0.0
    eval_every: int = 25
    patience: int = 3
    seed: int = 0
    kernel: str = "sdpa"

    def as_dict(self) -> dict:
        return asdict(self)


def schedule(step: int, cfg: LoopConfig) -> float:
    """Learning-rate factor: linear warmup over `warmup` of the steps, then cosine to 0."""
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, cfg.steps - warm)))


def batch_indices(step: int, n: int, cfg: LoopConfig) -> list[int]:
    """Item indices of optimizer step `step`: epochs of a seeded permutation, so a resumed
    run sees exactly the batches the uninterrupted run would have seen."""
    per_epoch = max(1, n // cfg.batch_size)
    epoch, b = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)).tolist()
    return order[b * cfg.batch_size:(b + 1) * cfg.batch_size]


def dev_accuracy(model, tok, adapter, dev_items, kernel: str) -> float:
    """Accuracy on the dev items with the adapter attached (evaluation mode)."""
    from ..evals.scoring import score

    adapter.module.eval()
    try:
        return sum(score(model, tok, dev_items, [adapter], kernel, batch_size=16).correct(dev_items)) / len(dev_items)
    finally:
        adapter.module.train()


@dataclass
class _State:
    step: int = 0
    best_dev: float = -1.0
    best_step: int = 0
    best: dict | None = None
    bad_evals: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: list | None = None
    dev: list | None = None


def _checkpoint(path: Path | None, st: _State, adapter, opt, sched) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    torch.save({"state": asdict(st), "adapter": adapter.trainable_state(), "opt": opt.state_dict(),
                "sched": sched.state_dict(), "rng": torch.get_rng_state()}, tmp)
    tmp.replace(path)


def _resume(path: Path | None, adapter, opt, sched) -> _State:
    if path is None or not path.exists():
        return _State(losses=[], dev=[])
    ck = torch.load(path, weights_only=False)
    adapter.module.load_state_dict(ck["adapter"], strict=False)
    opt.load_state_dict(ck["opt"])
    sched.load_state_dict(ck["sched"])
    torch.set_rng_state(ck["rng"])  # gate sampling continues where it stopped
    return _State(**ck["state"])


def _step(model, adapter, batch, opt, sched, cfg, penalty) -> float:
    from ..core.session import attach

    with attach(model, kernel=cfg.kernel, modify=[adapter]):
        loss = answer_nll(model, batch)
        total = loss + (penalty() if penalty is not None else 0.0)
    opt.zero_grad(set_to_none=True)
    total.backward()
    torch.nn.utils.clip_grad_norm_(adapter.parameters(), cfg.clip)
    opt.step()
    sched.step()
    return float(loss.detach())


def _evaluate(model, tok, adapter, dev_items, st: _State, cfg: LoopConfig) -> bool:
    """Dev accuracy now; keeps the best values; True when early stopping says stop."""
    acc = dev_accuracy(model, tok, adapter, dev_items, cfg.kernel)
    st.dev.append([st.step, acc])
    if acc > st.best_dev:
        st.best_dev, st.best_step, st.bad_evals = acc, st.step, 0
        st.best = {k: v.detach().clone() for k, v in adapter.trainable_state().items()}
    else:
        st.bad_evals += 1
    return cfg.patience > 0 and st.bad_evals >= cfg.patience


def fit(model, tok, adapter, rows, dev_items, cfg: LoopConfig, penalty=None, checkpoint=None, show=True) -> dict:
    """Train `adapter` on encoded rows [(prompt ids, answer ids)]; returns the run's history.

    penalty: optional callable -> scalar added to the loss (L1 of lofit's scalings, L0 of gates).
    checkpoint: a file path; an existing one is resumed from, and it is rewritten at every dev eval.
    At the end the adapter holds the values of its best dev evaluation.
    """
    torch.manual_seed(cfg.seed)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    params = adapter.parameters()
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: schedule(s, cfg))
    path = Path(checkpoint) if checkpoint else None
    st = _resume(path, adapter, opt, sched)
    try:
        _run(model, tok, adapter, rows, dev_items, cfg, penalty, st, (opt, sched, path), show)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    if st.best is not None:
        adapter.module.load_state_dict(st.best, strict=False)
    adapter.module.eval()
    return {"steps_run": st.step, "best_step": st.best_step, "best_dev": st.best_dev, "dev_curve": st.dev,
            "train_seconds": st.seconds, "tokens": st.tokens, "tokens_per_s": st.tokens / max(st.seconds, 1e-9),
            "loss_first": st.losses[0] if st.losses else None, "loss_last": st.losses[-1] if st.losses else None}


def _run(model, tok, adapter, rows, dev_items, cfg, penalty, st, opt_state, show) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    opt, sched, path = opt_state
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    adapter.module.train()
    cols = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.3f}  {task.fields[tps]:.0f} tok/s"), TimeRemainingColumn())
    with Progress(*cols, transient=True, disable=not show) as bar:
        job = bar.add_task(f"tune {adapter.method}", total=cfg.steps, completed=st.step, loss=0.0, tps=0.0)
        stopped = cfg.patience > 0 and st.bad_evals >= cfg.patience  # a resumed run that had stopped early
        while st.step < cfg.steps and not stopped:
            batch = collate([rows[i] for i in batch_indices(st.step, len(rows), cfg)], pad)
            t0 = time.perf_counter()
            loss = _step(model, adapter, batch, opt, sched, cfg, penalty)
            st.seconds += time.perf_counter() - t0
            st.tokens += int(batch["attention_mask"].sum())
            st.step += 1
            st.losses.append(loss)
            bar.update(job, completed=st.step, loss=loss, tps=st.tokens / st.seconds)
            last = st.step == cfg.steps
            if (cfg.eval_every and st.step % cfg.eval_every == 0) or last:
                stop = _evaluate(model, tok, adapter, dev_items, st, cfg)
                _checkpoint(path, st, adapter, opt, sched)
                if stop:
                    break
