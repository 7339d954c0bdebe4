"""The `ring` and `striped` kernels: sequence-parallel exact attention over torch.distributed.

Every rank holds the whole model and one shard of the sequence (`layout.shard_index`).
In a prefill call each rank attends its queries to its own key/value block, then to the
blocks of the other ranks as they come around the ring (sent to rank + 1, received from
rank - 1 with isend / irecv while the current block is computed), merging the partial
results by their log-sum-exps (`core.scores.merge`). The backward runs the ring again:
key/value blocks travel as in the forward and their gradient accumulators travel with
them, arriving home after a full turn (ring-flash-attention's scheme), so gradients are
exact. A decode call (new tokens on a sharded KV cache) is answered by every rank's cache
part and merged by log-sum-exp after one all_gather of [B, H, q, Dv + 1] floats; the cache
is never gathered. The kernels read everything distributed from a `RingContext`, which
`attnlab.distributed.session` builds; called without one they refuse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..core import scores as sc
from ..core.call import AttnCall, KernelOutput, RefusedCall, refuse
from ..core.hooks import Hooks
from . import blocks
from .comm import DEFAULT_TIMEOUT, Exchange, all_gather


@dataclass
class RingContext:
    """What the ring kernels need to know about the distributed run (one per rank).

    index      long [world, n]: global sequence index of every rank's prefill tokens
    key_valid  bool [B, T]: real (non-padding) tokens over the whole sequence, T >= world * n
               (generated tokens are appended as they come)
    slots      long [S]: global index of each slot of this rank's KV cache, in append order
    owned      bool [S]: whether this rank answers for that slot (each token counted once)
    query_index long [q]: global indices of the queries of a decode call
    mode       "prefill" (the ring) or "decode" (local cache + merge)
    observe    optional callback(call, ring, query, key, lse, sizes) run after each prefill
               call with the final lse (`distributed.stats` streams statistics so)
    bytes_sent, compute_seconds, tally: what this rank sent and computed (measurements)
    """

    rank: int
    world: int
    layout: str
    index: torch.Tensor
    key_valid: torch.Tensor
    timeout: float = DEFAULT_TIMEOUT
    mode: str = "prefill"
    slots: torch.Tensor | None = None
    owned: torch.Tensor | None = None
    query_index: torch.Tensor | None = None
    observe: object = None  # callback(call, ring, query, key, lse, sizes) after each prefill call
    bytes_sent: int = 0
    compute_seconds: float = 0.0
    tally: dict = field(default_factory=dict)

    def block(self, rank: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(global indices [n], key_valid [B, n]) of `rank`'s prefill block, on `device`."""
        idx = self.index[rank].to(device)
        return idx, self.key_valid.to(device)[:, idx]


def _timed(ring: RingContext, fn, *args):
    """fn(*args), its time added to ring.compute_seconds."""
    t0 = time.perf_counter()
    result = fn(*args)
    ring.compute_seconds += time.perf_counter() - t0
    return result


def ring_forward(call: AttnCall, ring: RingContext, query, key, value, sizes):
    """out [B, H, Q, Dv] fp32 and lse [B, H, Q] of the local queries on every rank's block."""
    b, h, n_q = query.shape[:3]
    out = torch.zeros(b, h, n_q, value.shape[-1], device=query.device)
    lse = torch.full((b, h, n_q), -torch.inf, device=query.device)
    q_idx, _ = ring.block(ring.rank, query.device)
    kv = [key, value]
    for step in range(ring.world):
        pending = Exchange(ring, kv, tag=0) if step < ring.world - 1 else None
        k_idx, k_valid = ring.block((ring.rank - step) % ring.world, query.device)
        if blocks.may_see(call, q_idx, k_idx):
            view = blocks.global_view(call, q_idx, k_idx, k_valid)
            o, l = _timed(ring, blocks.attend, call, query, kv[0], kv[1], view, sizes, ring.tally)
            out, lse = sc.merge(out, lse, o, l)
        if pending is not None:
            kv = pending.wait()
    if ring.observe is not None:
        ring.observe(call, ring, query, key, lse, sizes)
    return out, lse


def ring_backward(call: AttnCall, ring: RingContext, query, key, value, out, lse, dout, sizes):
    """(dq, dk, dv) fp32 of the local block: the ring again, gradient accumulators riding along."""
    delta = (dout * out).sum(-1)  # [B, H, Q]
    q_idx, _ = ring.block(ring.rank, query.device)
    dq = torch.zeros(query.shape, device=query.device)
    acc = [torch.zeros(key.shape, device=key.device), torch.zeros(value.shape, device=value.device)]
    kv, travelling = [key, value], None
    for step in range(ring.world):
        pending = Exchange(ring, kv, tag=1) if step < ring.world - 1 else None
        k_idx, k_valid = ring.block((ring.rank - step) % ring.world, query.device)
        parts = None
        if blocks.may_see(call, q_idx, k_idx):
            view = blocks.global_view(call, q_idx, k_idx, k_valid)
            parts = _timed(ring, blocks.grads, call, query, kv[0], kv[1], dout, lse, delta, view, sizes)
            dq += parts[0]
        if travelling is not None:
            acc = travelling.wait()  # the accumulators of the block just computed on
        if parts is not None:
            acc = [acc[0] + parts[1], acc[1] + parts[2]]
        if ring.world > 1:
            travelling = Exchange(ring, acc, tag=2)
        if pending is not None:
            kv = pending.wait()
    if travelling is not None:
        acc = travelling.wait()  # after a full turn: this rank's own block
    return dq, acc[0], acc[1]


class RingAttention(torch.autograd.Function):
    """Exact ring attention with an exact ring backward; output [B, H, Q, Dv] fp32.

    Every rank must call it (and its backward) together: both exchange blocks.

    ring None: a ring of one (no process group), the call's own visibility (`blocks.local_view`).
    """

    @staticmethod
    def forward(fctx, query, key, value, call, ring, sizes):
        if ring is None:
            out, lse = blocks.attend(call, query, key, value, blocks.local_view(call), sizes)
        else:
            out, lse = ring_forward(call, ring, query, key, value, sizes)
        fctx.save_for_backward(query, key, value, out, lse)
        fctx.call, fctx.ring, fctx.sizes = call, ring, sizes
        return out

    @staticmethod
    def backward(fctx, dout):
        query, key, value, out, lse = fctx.saved_tensors
        call, ring, sizes, dout = fctx.call, fctx.ring, fctx.sizes, dout.float()
        if ring is None:
            delta = (dout * out).sum(-1)  # [B, H, Q]
            dq, dk, dv = blocks.grads(call, query, key, value, dout, lse, delta, blocks.local_view(call), sizes)
        else:
            dq, dk, dv = ring_backward(call, ring, query, key, value, out, lse, dout, sizes)
        return dq.to(query.dtype), dk.to(key.dtype), dv.to(value.dtype), None, None, None


def decode_attend(call: AttnCall, ring: RingContext, sizes) -> torch.Tensor:
    """New queries on the sharded cache: out [B, H, q, Dv] fp32, the same on every rank.

    The call's keys are this rank's cache (its last k_len slots: a sliding-window cache
    keeps only its window); slots this rank does not own are masked, so each token counts
    once. Each rank's (output, lse) goes to every rank in one all_gather and is merged.
    No autograd through decode calls.
    """
    slots, owned = ring.slots[-call.k_len:].to(call.device), ring.owned[-call.k_len:].to(call.device)
    k_valid = ring.key_valid.to(call.device)[:, slots] & owned[None]  # [B, K]
    view = blocks.global_view(call, ring.query_index.to(call.device), slots, k_valid)
    out, lse = _timed(ring, blocks.attend, call, call.query, call.key, call.value, view, sizes, ring.tally)
    parts = all_gather(torch.cat([out, lse[..., None]], dim=-1), ring)  # world x [B, H, q, Dv + 1]
    out, lse = parts[0][..., :-1], parts[0][..., -1]
    for part in parts[1:]:
        out, lse = sc.merge(out, lse, part[..., :-1], part[..., -1])
    return out


def _check(call: AttnCall, hooks: Hooks, context, kernel: str, layouts: tuple, sizes) -> None:
    """Refuse, before any work, every call the kernel cannot serve exactly."""
    if min(sizes) < 1:
        raise ValueError(f"{kernel}: block_size and key_block must be >= 1, got {sizes}")
    if call.sinks is not None:
        refuse(call, kernel, "sink logits (s_aux)")
    if not hooks.empty:
        refuse(call, kernel, "modifiers or observers (each step sees only one block)",
               "'eager' (or attnlab.distributed.head_stats for statistics)")
    if call.mask is not None and call.mask.shape[1] not in (1, call.num_heads):
        raise ValueError(f"{kernel}: mask head dimension {call.mask.shape[1]} is neither 1 nor {call.num_heads}")
    if context is None:
        return
    if not isinstance(context, RingContext):
        raise TypeError(f"{kernel}: context must be a RingContext (from attnlab.distributed.session), "
                        f"got {type(context).__name__}")
    if context.layout not in layouts:
        raise RefusedCall(f"kernel {kernel!r} serves the layout(s) {', '.join(layouts)}, not {context.layout!r}")
    if not call.positional:
        refuse(call, kernel, "cross-attention over sharded ranks (its keys are not sharded with the queries)",
               "a single process")
    for name in ("bias", "position_bias"):
        if getattr(call, name) is not None:
            refuse(call, kernel, f"the score term {name!r} over sharded ranks", "a single process")
    if call.dropout and call.module is not None and call.module.training:
        refuse(call, kernel, "attention dropout in training", "model.eval() or attention_dropout=0")
    if context.mode == "prefill" and not call.q_len == call.k_len == context.index.shape[1]:
        raise RefusedCall(f"{call.site}: a ring prefill needs the rank's {context.index.shape[1]} queries "
                          f"on its own keys, got {call.q_len} queries on {call.k_len} keys")


def _forward(call: AttnCall, ring: RingContext | None, sizes) -> KernelOutput:
    if ring is None or ring.mode == "prefill":
        out = RingAttention.apply(call.query, call.key, call.value, call, ring, sizes)  # [B, H, Q, Dv]
    else:
        out = decode_attend(call, ring, sizes)
    return KernelOutput(output=out.to(call.value.dtype).transpose(1, 2).contiguous())  # [B, Q, H, Dv]


def ring_kernel(call: AttnCall, hooks: Hooks, context: RingContext | None = None,
                block_size: int = 512, key_block: int = 1024) -> KernelOutput:
    """Ring attention over contiguous shards (layout "ring"); output [B, Q, H, Dv].

    context: the run's RingContext (`attnlab.distributed.session`); None = a ring of one
    rank (this process, the call's own mask). Peak extra memory ~ B*H*block_size*key_block
    fp32 scores per step, plus one key/value block in flight.
    """
    _check(call, hooks, context, "ring", ("ring",), (block_size, key_block))
    return _forward(call, context, (block_size, key_block))


def striped_kernel(call: AttnCall, hooks: Hooks, context: RingContext | None = None,
                   block_size: int = 512, key_block: int = 1024) -> KernelOutput:
    """Ring attention over load-balanced shards (layout "striped" or "zigzag"); output [B, Q, H, Dv].

    Parameters as `ring_kernel`.
    """
    _check(call, hooks, context, "striped", ("striped", "zigzag"), (block_size, key_block))
    return _forward(call, context, (block_size, key_block))
