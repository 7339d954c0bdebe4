"""What a user calls on every rank under torchrun: `session`, `forward`, `generate`.

Each rank is given the FULL input (the same `input_ids` everywhere; checked), keeps the
positions its layout assigns it (`layout.shard_index`), and runs the stock model on that
shard with the ring kernel. Global positions reach the model as `position_ids` (RoPE) and
the ring kernel rebuilds visibility from global sequence indices (causal, sliding window,
padding from `attention_mask`), so the model's own local masks are never used. A length
the layout cannot split evenly is padded on the right with invisible tokens.
"""

from __future__ import annotations

import inspect
import weakref
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .comm import DEFAULT_TIMEOUT, DistributedError, agree, ensure_group, model_hash, tensor_hash
from .layout import check_layout, multiple, padded_length, shard_index
from .ring import RingContext

_CHECKED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> hash agreed by all ranks


@dataclass
class Shard:
    """This rank's part of a sharded run.

    inputs     model keyword arguments of the local shard: input_ids [B, n], position_ids [B, n]
    positions  long [n]: global sequence index of each local token
    length     tokens of the real input; padded: after padding to the layout's multiple
    context    the RingContext the kernels read (bytes_sent, compute_seconds, tally)
    """

    inputs: dict
    positions: torch.Tensor
    length: int
    padded: int
    context: RingContext


def check_model(model, rank: int, world: int) -> str:
    """The model's hash, after checking every rank holds the same model (once per model object)."""
    if model not in _CHECKED:
        digest = model_hash(model)
        agree(digest, "models (weights or config)", rank, world)
        _CHECKED[model] = digest
    return _CHECKED[model]


def _check_inputs(input_ids, attention_mask, position_ids) -> None:
    from ..errors import InputError

    if not torch.is_tensor(input_ids) or input_ids.dim() != 2 or input_ids.dtype != torch.long:
        raise InputError("input_ids must be a long tensor [batch, tokens], the same on every rank")
    if input_ids.shape[1] == 0:
        raise InputError("input_ids has no tokens")
    for name, t in (("attention_mask", attention_mask), ("position_ids", position_ids)):
        if t is not None and tuple(t.shape) != tuple(input_ids.shape):
            raise InputError(f"{name} has shape {tuple(t.shape)}, input_ids {tuple(input_ids.shape)}")


def _pad_right(x: torch.Tensor, total: int, value) -> torch.Tensor:
    extra = total - x.shape[1]
    return x if extra == 0 else torch.cat([x, x.new_full((x.shape[0], extra), value)], dim=1)


def prepare(model, input_ids, layout: str = "striped", attention_mask=None, position_ids=None,
            pad: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Shard:
    """This rank's Shard of the full input (checks ranks agree on model and input)."""
    from ..errors import InputError

    check_layout(layout)
    _check_inputs(input_ids, attention_mask, position_ids)
    rank, world = ensure_group(timeout)
    check_model(model, rank, world)
    extra = [t for t in (attention_mask, position_ids) if t is not None]
    agree(tensor_hash(input_ids, *extra), "inputs (input_ids / attention_mask / position_ids)", rank, world)
    b, n = input_ids.shape
    total = padded_length(n, layout, world)
    if total != n and not pad:
        raise InputError(f"{n} tokens do not split evenly over {world} ranks with layout {layout!r}; "
                         f"pass pad=True (pads to {total} with invisible tokens) or give a multiple of {multiple(layout, world)} tokens")
    dev = next(model.parameters()).device
    valid = torch.ones(b, n, dtype=torch.bool) if attention_mask is None else attention_mask.bool().cpu()
    pos = torch.arange(total).expand(b, total) if position_ids is None else _pad_right(position_ids.cpu(), total, 0)
    pad_id = getattr(model.config, "pad_token_id", None) or 0
    ids = _pad_right(input_ids.cpu(), total, pad_id)
    index = shard_index(total, layout, world)  # [world, n_local]
    local = index[rank]
    ctx = RingContext(rank, world, layout, index.to(dev), _pad_right(valid, total, False).to(dev),
                      timeout=timeout, slots=local.to(dev), owned=torch.ones(local.numel(), dtype=torch.bool, device=dev))
    inputs = {"input_ids": ids[:, local].to(dev), "position_ids": pos[:, local].contiguous().to(dev)}
    return Shard(inputs, local, n, total, ctx)


@contextmanager
def session(model, input_ids, layout: str = "striped", attention_mask=None, position_ids=None, pad: bool = True,
            block_size: int = 512, key_block: int = 1024, timeout: float = DEFAULT_TIMEOUT):
    """Attach `model` to the ring kernel for this rank's shard of `input_ids`; yields the Shard.

    Run `model(**shard.inputs)` inside (with gradients if wanted: the backward runs the ring
    too; every rank must call forward and backward together). Outputs are for the local
    positions `shard.positions`.
    """
    from ..core.session import attach

    shard = prepare(model, input_ids, layout, attention_mask, position_ids, pad, timeout)
    kernel = "ring" if layout == "ring" else "striped"
    with attach(model, kernel=kernel, context=shard.context, block_size=block_size, key_block=key_block):
        yield shard


def _takes(model, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


def gather_rows(x: torch.Tensor, held: torch.Tensor, keep: torch.Tensor, ctx: RingContext):
    """Rows of every rank at the global positions `keep`, on rank 0: [B, len(keep), ...]; None elsewhere.

    x [B, m, ...]: this rank's rows at global positions `held` [m] (sorted, a subset of keep).
    """
    import datetime

    import torch.distributed as dist

    slot = {int(p): i for i, p in enumerate(keep.tolist())}
    if ctx.rank != 0:
        work = dist.isend(x.contiguous(), 0, tag=7)
        if not work.wait(datetime.timedelta(seconds=ctx.timeout)):
            raise DistributedError(f"rank {ctx.rank}: sending outputs to rank 0 timed out")
        return None
    out = x.new_empty((x.shape[0], keep.numel()) + tuple(x.shape[2:]))
    for r in range(ctx.world):
        mine = ctx.index[r].cpu()
        mine = mine[torch.isin(mine, keep)]
        part = x if r == 0 else x.new_empty((x.shape[0], mine.numel()) + tuple(x.shape[2:]))
        if r:
            work = dist.irecv(part, r, tag=7)
            if not work.wait(datetime.timedelta(seconds=ctx.timeout)):
                raise DistributedError(f"rank 0: outputs of rank {r} did not arrive within {ctx.timeout:g} s")
        out[:, [slot[int(p)] for p in mine]] = part
    return out


def forward(model, input_ids, layout: str = "striped", attention_mask=None, position_ids=None,
            positions=None, pad: bool = True, block_size: int = 512, key_block: int = 1024,
            timeout: float = DEFAULT_TIMEOUT, report: dict | None = None):
    """Run `model` on `input_ids` [B, T] sharded over all ranks; call it on every rank.

    Returns on rank 0 the full logits [B, T, V] (a model without an LM head: its
    last_hidden_state [B, T, D]); None on the other ranks. positions: optional global
    positions (long [k]) whose rows alone are returned (the LM head runs only on them,
    via `logits_to_keep`): full logits of a long input are B*T*V floats. report: optional
    dict this rank fills with its measurements (bytes_sent by the attention ring,
    attention compute_seconds, visible query-key pairs computed, local tokens).
    """
    n = input_ids.shape[1]
    keep = torch.arange(n) if positions is None else torch.as_tensor(positions, dtype=torch.long).unique()
    if keep.numel() and (int(keep.min()) < 0 or int(keep.max()) >= n):
        from ..errors import InputError
        raise InputError(f"positions must lie in [0, {n}), got {int(keep.min())}..{int(keep.max())}")
    with session(model, input_ids, layout, attention_mask, position_ids, pad, block_size, key_block, timeout) as shard, \
            torch.no_grad():
        held = torch.isin(shard.positions, keep)
        kwargs = dict(shard.inputs)
        if _takes(model, "use_cache"):
            kwargs["use_cache"] = False
        lm = _takes(model, "logits_to_keep")
        if lm:
            kwargs["logits_to_keep"] = held.nonzero().flatten().to(kwargs["input_ids"].device)
        out = model(**kwargs)
        rows = out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state
        if not lm:
            rows = rows[:, held.to(rows.device)]
        ctx = shard.context
        if report is not None:
            report.update(bytes_sent=ctx.bytes_sent, compute_seconds=ctx.compute_seconds,
                          pairs=ctx.tally.get("pairs", 0), tokens=shard.positions.numel(), padded=shard.padded)
        return gather_rows(rows, shard.positions[held], keep, ctx)


def _greedy(logits: torch.Tensor, done: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Next token per row [B] from last-position logits [B, V]; finished rows get pad_id."""
    nxt = logits.float().argmax(-1)
    return torch.where(done, torch.full_like(nxt, pad_id), nxt)


def _broadcast(t: torch.Tensor, src: int, ctx: RingContext) -> torch.Tensor:
    import torch.distributed as dist

    t = t.to(ctx.index.device)  # nccl broadcasts device tensors
    try:
        dist.broadcast(t, src)
    except RuntimeError as exc:
        raise DistributedError(f"rank {ctx.rank}: broadcast from rank {src} failed or timed out: {exc}") from exc
    return t.cpu()


def _decode_step(model, ctx: RingContext, token, pos, cache):
    """One new token [B] at global index ctx.key_valid.shape[1] on the sharded cache: logits [B, V]."""
    t = ctx.key_valid.shape[1]
    dev = ctx.key_valid.device
    ctx.slots = torch.cat([ctx.slots, torch.tensor([t], device=dev)])
    ctx.owned = torch.cat([ctx.owned, torch.tensor([t % ctx.world == ctx.rank], device=dev)])
    ctx.key_valid = torch.cat([ctx.key_valid, torch.ones(token.shape[0], 1, dtype=torch.bool, device=dev)], dim=1)
    ctx.query_index = torch.tensor([t], device=dev)
    out = model(input_ids=token[:, None], position_ids=pos[:, None], past_key_values=cache, use_cache=True)
    return out.logits[:, -1], out.past_key_values


def generate(model, input_ids, max_new_tokens: int = 32, layout: str = "striped", attention_mask=None,
             eos_token_id=None, block_size: int = 512, key_block: int = 1024, timeout: float = DEFAULT_TIMEOUT):
    """Greedy decoding with the prompt's KV cache sharded over all ranks; call it on every rank.

    input_ids [B, T] (left-padded batches, as tokenizers pad for generation). The prompt is
    prefilled with the ring; each new token is then answered by every rank's cache part,
    merged by log-sum-exp (the cache is never gathered; new tokens' keys are appended on
    every rank and counted by one, round robin). Positions follow transformers' generate
    (cumsum of the mask). Returns [B, T + new] tokens on every rank; rows that produced
    eos_token_id (default: the model's generation config) continue with the pad token.
    """
    from ..errors import InputError

    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
    gen = getattr(model, "generation_config", None)
    eos = eos_token_id if eos_token_id is not None else getattr(gen, "eos_token_id", None)
    eos = torch.tensor([eos] if isinstance(eos, int) else (eos or []), dtype=torch.long)
    pad_id = getattr(model.config, "pad_token_id", None) or 0
    with session(model, input_ids, layout, mask, pos, True, block_size, key_block, timeout) as shard, torch.no_grad():
        ctx, last = shard.context, input_ids.shape[1] - 1
        owner = int((ctx.index == last).nonzero()[0, 0])
        here = (shard.positions == last).nonzero().flatten()
        keep = here if here.numel() else torch.tensor([0])
        out = model(**shard.inputs, use_cache=True, logits_to_keep=keep.to(ctx.index.device))
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        token = _broadcast(_greedy(out.logits[:, -1].cpu(), done, pad_id), owner, ctx)
        tokens, cache, nxt_pos = [token], out.past_key_values, pos[:, -1] + 1
        ctx.mode = "decode"
        for _ in range(max_new_tokens - 1):
            done = done | torch.isin(token, eos)
            if bool(done.all()):
                break
            dev = ctx.index.device
            logits, cache = _decode_step(model, ctx, token.to(dev), nxt_pos.to(dev), cache)
            token = _broadcast(_greedy(logits.cpu(), done, pad_id), 0, ctx)
            tokens.append(token)
            nxt_pos = nxt_pos + 1
    return torch.cat([input_ids.cpu(), torch.stack(tokens, dim=1)], dim=1)
