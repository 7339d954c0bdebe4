"""Attention transfer: train feature maps so each layer's linear / hybrid output matches softmax.

One forward of the frozen model under `attach(kernel, maps=..., teacher=True)`: every
attention call returns the exact softmax output (so every layer's input is the teacher's,
as LoLCATs' layer-wise training with teacher inputs) and computes the student output of
the SAME q, k, v beside it; the loss is sum over layers of MSE(student, teacher) (per layer
a mean over batch, tokens, heads and channels). Only the maps (and the hybrid mixing
factors) receive gradients. Data: real text (`attnlab.bench.corpora`), cut into
`seq_len`-token sequences; the evaluation text is a different book, never trained on.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..errors import OptionError
from .maps import Maps, check_kind, site_key

TRAIN_TEXT = ("austen:prideprejudice", "austen:emma", "kjv:ge1:1-de34:12", "shakespeare:hamlet")
EVAL_TEXT = ("austen:persuasion", "shakespeare:macbeth")
CHECKPOINT = "transfer_checkpoint.pt"


@dataclass
class Recipe:
    """The transfer settings (saved with the maps)."""

    feature_map: str = "hedgehog"
    window: int = 64
    tokens: int = 65536  # training tokens (sequences x seq_len)
    seq_len: int = 256
    batch: int = 1
    lr: float = 1e-2
    warmup: int = 10
    clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 25


def text_of(sources) -> str:
    """Concatenated text of corpus names 'austen:<novel>', 'kjv:<books>', 'shakespeare:<play>'."""
    from ..bench import corpora

    parts = []
    for src in sources:
        kind, _, arg = src.partition(":")
        fn = {"austen": corpora.austen, "kjv": corpora.kjv, "shakespeare": corpora.shakespeare}.get(kind)
        if fn is None:
            raise OptionError(f"unknown corpus {src!r}; use austen:<novel>, kjv:<books> or shakespeare:<play>")
        parts.append(fn(arg) if arg else fn())
    return "\n\n".join(parts)


def sequences(tok, text: str, seq_len: int, n_tokens: int) -> torch.Tensor:
    """The first n_tokens tokens of `text` as [N, seq_len] long (N = n_tokens // seq_len)."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    n = n_tokens // seq_len
    if n < 1 or n * seq_len > len(ids):
        raise OptionError(f"need {max(n, 1) * seq_len} tokens of text, have {len(ids)} (seq_len {seq_len})")
    return torch.tensor(ids[:n * seq_len]).view(n, seq_len)


def ids_hash(ids: torch.Tensor) -> str:
    return hashlib.sha256(ids.numpy().astype("int64").tobytes()).hexdigest()


class _Sites:
    """Observer recording each self-attention call's site, heads, head dim and window."""

    def __init__(self):
        self.found = {}

    def on_call(self, call):
        if call.role == "self" and call.sliding_window is None:
            self.found[site_key(call.site)] = (call.num_heads, call.query.shape[-1])


def build_maps(model, feature_map: str = "hedgehog", window: int = 64, features: int | None = None,
               seed: int = 0) -> Maps:
    """Fresh Maps for every global self-attention layer of `model` (found by one 8-token forward)."""
    from ..core.session import attach

    rec = _Sites()
    ids = torch.full((1, 8), 1, dtype=torch.long)
    with torch.no_grad(), attach(model, kernel="sdpa", observe=[rec]):
        model(input_ids=ids)
    maps = Maps(check_kind(feature_map), window, rec.found, features, seed)
    from .saved import module_hash

    mods = {f"{s.stack}_{s.role}_{s.layer}": m for s, m in _site_modules(model)}
    maps.meta["modules"] = {k: module_hash(mods[k]) for k in rec.found if k in mods}
    return maps


def _site_modules(model):
    """(Site, attention module) of every attention module, as attach() names them."""
    from ..core import sites

    stacks = sites.stack_names(model)
    for name, module in sites.attention_modules(model).values():
        yield sites.resolve(name, module, stacks, False), module


def kernel_of(maps: Maps) -> str:
    return "hybrid" if maps.window else "linear"


def _lr(step: int, recipe: Recipe, total: int) -> float:
    """Linear warmup, then cosine decay to 10%."""
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    frac = (step - recipe.warmup) / max(1, total - recipe.warmup)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def _step_loss(model, maps: Maps, ids: torch.Tensor) -> torch.Tensor:
    """Summed per-layer transfer MSE of one batch (teacher outputs flow through the model)."""
    from ..core.session import attach

    maps.losses.clear()
    with attach(model, kernel=kernel_of(maps), maps=maps, teacher=True):
        model(input_ids=ids, use_cache=False)
    if not maps.losses:
        raise RuntimeError("no attention call recorded a transfer loss")
    return sum(maps.losses.values())


def _save_checkpoint(path: Path, maps: Maps, opt, step: int, history: list) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"maps": maps.state_dict(), "opt": opt.state_dict(), "step": step, "history": history}, tmp)
    tmp.replace(path)


def _progress(total: int, start: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, unit="step", dynamic_ncols=True)


def _layer_text(maps: Maps) -> str:
    """Per-layer MSE, compact: 'L0 1.2e-03 L1 ...'."""
    return " ".join(f"L{k.rsplit('_', 1)[-1]} {float(v):.1e}" for k, v in maps.losses.items())


def _train(model, maps: Maps, data: torch.Tensor, recipe: Recipe, ckpt: Path | None, progress: bool,
           callback=None) -> list:
    """The optimisation loop over data [N, seq_len]; returns the history rows (resumes from ckpt)."""
    params = [p for p in maps.parameters() if p.requires_grad]
    steps = data.shape[0] // recipe.batch
    history: list = []
    if not params or steps == 0:
        return history
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    start = 0
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        maps.load_state_dict(state["maps"])
        opt.load_state_dict(state["opt"])
        start, history = state["step"], state["history"]
    bar, t0 = _progress(steps, start, progress), time.perf_counter()
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, recipe, steps)
        ids = data[step * recipe.batch:(step + 1) * recipe.batch]  # [batch, seq_len]
        loss = _step_loss(model, maps, ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, recipe.clip)
        opt.step()
        done = (step + 1 - start) * ids.numel()
        history.append({"step": step + 1, "tokens": (step + 1) * ids.numel(), "loss": float(loss.detach()),
                        "layers": {k: float(v.detach()) for k, v in maps.losses.items()}})
        bar.set_postfix_str(f"mse {float(loss):.3e} | {_layer_text(maps)[:160]} | "
                            f"{done / (time.perf_counter() - t0):.0f} tok/s")
        bar.update(1)
        if ckpt is not None and ((step + 1) % recipe.checkpoint_every == 0 or step + 1 == steps):
            _save_checkpoint(ckpt, maps, opt, step + 1, history)
        if callback is not None and ((step + 1) % recipe.checkpoint_every == 0 or step + 1 == steps):
            callback(step + 1, (step + 1) * ids.numel(), maps)
    bar.close()
    maps.losses.clear()
    return history


def transfer(model, tok, feature_map: str = "hedgehog", window: int = 64, tokens: int = 65536,
             text: str | None = None, out=None, progress: bool = True, callback=None,
             data: torch.Tensor | None = None, **options) -> Maps:
    """Attention transfer of `model` to `feature_map` (+ a softmax `window`, 0 = pure linear).

    tokens: training tokens (cut into options['seq_len'] sequences); text: training text
    (default: Austen, KJV, Hamlet; the evaluation books are never in it). out: a directory
    for the resumable checkpoint (a run with the same `out` continues where it stopped).
    data: token ids [N, seq_len] to train on instead of `text` (tokens / seq_len then unused).
    callback(step, tokens, maps): called every `checkpoint_every` steps (e.g. an evaluation).
    Other options: the fields of `Recipe`. Returns the trained Maps with meta['recipe'],
    meta['data'] and meta['history'] set (save them with `attnlab.convert.save`)."""
    recipe = Recipe(feature_map=check_kind(feature_map), window=int(window), tokens=int(tokens), **options)
    torch.manual_seed(recipe.seed)
    if data is None:
        data = sequences(tok, text if text is not None else text_of(TRAIN_TEXT), recipe.seq_len, recipe.tokens)
    elif data.dim() != 2:
        raise OptionError(f"data must be token ids [N, seq_len], got shape {tuple(data.shape)}")
    maps = build_maps(model, feature_map, window, seed=recipe.seed)
    if not window:
        for lm in maps.layers.values():
            lm.mix.requires_grad_(False)  # no window: the mixing factor is unused
    ckpt = None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        ckpt = Path(out) / CHECKPOINT
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    t0 = time.perf_counter()
    try:
        for p, _ in frozen:
            p.requires_grad_(False)
        history = _train(model, maps, data, recipe, ckpt, progress, callback)
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    maps.meta.update(recipe=asdict(recipe), history=history, seconds=time.perf_counter() - t0,
                     trainable_params=sum(p.numel() for p in maps.parameters() if p.requires_grad),
                     data={"train_sha256": ids_hash(data), "train_tokens": int(data.numel()),
                           "train_sources": "token ids" if text is None and tok is None else
                           ("custom text" if text is not None else list(TRAIN_TEXT))})
    return maps.requires_grad_(False)


def eval_ids(tok, n_tokens: int = 8192, seq_len: int = 512, text: str | None = None) -> torch.Tensor:
    """Held-out evaluation sequences [N, seq_len] (default: Persuasion + Macbeth, never trained on)."""
    return sequences(tok, text if text is not None else text_of(EVAL_TEXT), seq_len, n_tokens)


@torch.no_grad()
def evaluate(model, ids: torch.Tensor, kernel: str = "sdpa", **params) -> float:
    """Perplexity of `model` under attach(kernel, **params) on ids [N, T] (next-token NLL, all positions)."""
    from ..core.session import attach

    total, count = 0.0, 0
    with attach(model, kernel=kernel, **params):
        for row in ids:
            logits = model(input_ids=row[None], use_cache=False).logits[0, :-1].float()  # [T-1, V]
            total += float(torch.nn.functional.cross_entropy(logits, row[1:], reduction="sum"))
            count += row.numel() - 1
    return math.exp(total / count)
