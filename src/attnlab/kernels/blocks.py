"""Block-sparse attention shared by the sparse kernels: a kernel says WHICH key blocks
each query block sees, `attend` computes exact softmax attention over just those.

Queries and keys are cut into blocks of `size` positions (query block j = query rows
[j*size, (j+1)*size), key block i = keys [i*size, (i+1)*size)). A kernel hands over a
block mask [B, Hs, nq, nk] (Hs = key/value heads, so a GQA group shares its selection and
keys are never repeated per query head; or Hs = query heads for per-head selections) and
optionally a token-level `rule`. For every chunk of query blocks, `attend` gathers the
selected key blocks into one dense tensor and runs a single fused
`scaled_dot_product_attention` over [B*Hs*chunk, 1, R*size, ks*size] (R query heads per
selection head), so the work is a few large matmuls, never a Python loop over tokens.

Exactness: inside the gathered keys the model's own visibility (causal, padding mask,
the layer's sliding window) is applied token by token, so a block mask that covers every
visible block gives exactly dense attention. Blocks no query of the block can see under
the layer's position rules are dropped before gathering (Gemma3's 512-token sliding
layers cost O(n * 512), not O(n^2)).

Row alignment for the content-selecting kernels lives in `align.py`; the dense and band
paths the sparse kernels fall back to in `band.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from ..core import scores as sc
from ..core.call import AttnCall, KernelOutput, refuse

CHUNK_BYTES = 1 << 27  # bound on one chunk's mask/score tensor (128 MiB)


@dataclass(frozen=True)
class Grid:
    """Block geometry of one call: block size, query blocks nq, key blocks nk.

    k_end: optional long [B], per row the end (exclusive) of its real keys; keys from there
    on (padding rotated to the end by `aligned`) are left out of key means. None: K."""

    size: int
    nq: int
    nk: int
    q_offset: int
    device: torch.device = torch.device("cpu")
    k_end: torch.Tensor | None = field(default=None, compare=False)

    def q_positions(self) -> torch.Tensor:
        """Absolute key position of every (padded) query row: [nq, size]."""
        return self.q_offset + torch.arange(self.nq * self.size, device=self.device).view(self.nq, self.size)

    def block_of_query(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Key blocks holding the first and the last query of each query block: [nq], [nq]."""
        pos = self.q_positions()
        return pos[:, 0] // self.size, pos[:, -1] // self.size


def grid(call: AttnCall, size: int) -> Grid:
    if size < 1:
        raise ValueError(f"block size must be >= 1, got {size}")
    return Grid(size, -(-call.q_len // size), -(-call.k_len // size), call.q_offset, call.device)


def check_supported(call: AttnCall, kernel: str) -> None:
    """Refuse, before any work, calls the sparse kernels cannot serve exactly: cross-attention
    (their patterns are positions), additive biases and position biases, sink logits, and
    masks that differ per head."""
    if not call.positional:
        refuse(call, kernel, "cross-attention (its sparse patterns are defined on positions)")
    if call.bias is not None or call.position_bias is not None:
        refuse(call, kernel, "additive attention biases or position biases", "'eager' or 'chunked'")
    if call.sinks is not None:
        refuse(call, kernel, "attention-sink logits (s_aux)", "'eager', 'chunked' or 'sdpa'")
    if call.mask is not None and call.mask.shape[1] != 1:
        refuse(call, kernel, "a mask that differs per head")


def reachable(call: AttnCall, g: Grid) -> torch.Tensor:
    """Key blocks some query of each query block may see by position alone: bool [nq, nk]."""
    first, last = g.block_of_query()  # [nq]
    blocks = torch.arange(g.nk, device=g.device)[None, :]  # [1, nk]
    ok = torch.ones(g.nq, g.nk, dtype=torch.bool, device=g.device)
    if call.causal:
        ok &= blocks <= last[:, None]
        if call.sliding_window is not None:
            lowest = (g.q_positions()[:, 0] - call.sliding_window + 1).clamp(min=0) // g.size
            ok &= blocks >= lowest[:, None]
    return ok


def first_keys(call: AttnCall) -> torch.Tensor:
    """Index of each batch row's first real key (after left padding): long [B].

    Prefill: the first query that sees its own position. With a cache: the first key the
    first new query sees (on a sliding-window layer, the first key of its window).
    """
    if call.mask is None:
        return torch.zeros(call.batch, dtype=torch.long, device=call.device)
    mask = call.mask[:, 0].expand(call.batch, -1, -1)  # [B, Q, K]
    if call.q_offset == 0:
        own = torch.diagonal(mask, dim1=1, dim2=2)  # [B, Q] real tokens see themselves
    else:
        own = mask[:, 0]  # [B, K]
    return own.to(torch.int8).argmax(-1)


def pooled(call: AttnCall, g: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean query of each query block [B, H, nq, D] and mean key of each key block [B, H_kv, nk, D] (fp32).

    The mean query pools over every query of a block, so a selection made with it lets a
    query's output depend on the LATER queries of its block: only the papers' variants use it."""
    q = F.pad(call.query.float(), (0, 0, 0, g.nq * g.size - call.q_len)).view(*call.query.shape[:2], g.nq, g.size, -1)
    q_real = (call.q_len - torch.arange(g.nq, device=g.device) * g.size).clamp(max=g.size)[:, None]  # [nq, 1]
    return q.sum(3) / q_real, key_means(call, g)


def key_means(call: AttnCall, g: Grid) -> torch.Tensor:
    """Mean key of each key block: [B, H_kv, nk, D] fp32 (the last block over its real keys;
    with `g.k_end`, each row's blocks over its keys before k_end)."""
    k = F.pad(call.key.float(), (0, 0, 0, g.nk * g.size - call.k_len)).view(*call.key.shape[:2], g.nk, g.size, -1)
    if g.k_end is None:
        k_real = (call.k_len - torch.arange(g.nk, device=g.device) * g.size).clamp(max=g.size)[:, None]
        return k.sum(3) / k_real
    valid = torch.arange(g.nk * g.size, device=g.device)[None, :] < g.k_end[:, None]  # [B, nk*size]
    valid = valid.view(-1, 1, g.nk, g.size, 1)
    k_real = valid.sum(3).clamp(min=1)  # [B, 1, nk, 1]
    return k.masked_fill(~valid, 0.0).sum(3) / k_real


def mask_blocks(call: AttnCall, g: Grid, per_query: bool) -> torch.Tensor | None:
    """Key blocks the model's mask shows at least one key of: bool [Bm, 1, Q, nk] per query, or
    [Bm, 1, nq, nk] per query block (some query of it); None without a mask."""
    if call.mask is None:
        return None
    m = call.mask[:, 0]  # [Bm, Q, K]
    m = F.pad(m, (0, g.nk * g.size - call.k_len), value=False).view(m.shape[0], call.q_len, g.nk, g.size).any(3)
    if not per_query:
        m = F.pad(m, (0, 0, 0, g.nq * g.size - call.q_len), value=False).view(m.shape[0], g.nq, g.size, g.nk).any(2)
    return m[:, None]


def union_blocks(call: AttnCall, g: Grid, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query choices bool [B, Hs, Q, nk] -> the key blocks some query of each query block
    chose, and those not every (real) query chose (they need a token mask): [B, Hs, nq, nk] twice."""
    extra = g.nq * g.size - call.q_len
    some = F.pad(chosen, (0, 0, 0, extra), value=False).view(*chosen.shape[:2], g.nq, g.size, g.nk).any(3)
    every = F.pad(chosen, (0, 0, 0, extra), value=True).view(*chosen.shape[:2], g.nq, g.size, g.nk).all(3)
    return some, some & ~every


def block_scores(call: AttnCall, g: Grid, qpool: torch.Tensor, kpool: torch.Tensor) -> torch.Tensor:
    """Scaled pooled-query x pooled-key logits per head: [B, H, nq', nk] for qpool [B, H, nq', D]."""
    b, h, n, d = qpool.shape
    scores = torch.matmul(qpool.reshape(b, call.num_kv_heads, -1, d), kpool.transpose(-1, -2))  # [B, H_kv, G*nq', nk]
    return scores.view(b, h, n, -1) * call.scaling


def candidates(call: AttnCall, g: Grid) -> torch.Tensor:
    """Key blocks worth selecting: reachable by position, not all left padding, and with a key
    the mask shows some query of the block: bool [B, 1, nq, nk]."""
    k_last = torch.arange(g.nk, device=g.device) * g.size + g.size - 1  # [nk]
    real = k_last[None, :] >= first_keys(call)[:, None]  # [B, nk]
    cand = (reachable(call, g)[None] & real[:, None, :])[:, None]
    shown = mask_blocks(call, g, per_query=False)
    return cand if shown is None else cand & shown


def forced(call: AttnCall, g: Grid, sink: int, local: int) -> torch.Tensor:
    """The first `sink` real key blocks and the `local` blocks ending at each query block's
    last position (at least its own blocks): bool [B, 1, nq, nk]."""
    blk = torch.arange(g.nk, device=g.device)  # [nk]
    first_blk = (first_keys(call) // g.size)[:, None]  # [B, 1]
    sinks = (blk[None, :] >= first_blk) & (blk[None, :] < first_blk + sink)  # [B, nk]
    lo, hi = g.block_of_query()  # [nq]
    near = (blk[None, :] <= hi[:, None]) & (blk[None, :] > torch.minimum(lo, hi - local + 1)[:, None] - 1)
    return (sinks[:, None, :] | near[None])[:, None]


def keep_mass(probs: torch.Tensor, gamma: float) -> torch.Tensor:
    """Smallest set of entries (last dim) whose probability sum reaches gamma: bool like probs.
    gamma >= 1 keeps every entry."""
    if gamma >= 1.0:
        return torch.ones_like(probs, dtype=torch.bool)
    sorted_p, order = torch.sort(probs, dim=-1, descending=True)
    before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass of the entries ranked above
    keep_sorted = before < gamma * probs.sum(-1, keepdim=True)
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def visible_pairs(call: AttnCall) -> float:
    """Number of (query head, query, key) triples the model lets attend, over the batch."""
    if call.mask is not None:
        per_row = call.mask.sum().item() * (call.batch // call.mask.shape[0])
        return float(per_row * call.num_heads)
    if not call.causal:
        return float(call.batch * call.num_heads * call.q_len * call.k_len)
    seen = torch.arange(call.q_len, device=call.device) + call.q_offset + 1  # keys each query sees
    if call.sliding_window is not None:
        seen = seen.clamp(max=call.sliding_window)
    return float(call.batch * call.num_heads * seen.sum().item())


def layer_full(call: AttnCall, g: Grid) -> torch.Tensor:
    """Blocks whose every key every real query of the block sees: bool [Bm, nq, nk] (Bm = 1 or B)."""
    if call.mask is not None:
        m = call.mask[:, 0]  # [Bm, Q, K]
        if g.nq * g.size != call.q_len:
            m = F.pad(m, (0, 0, 0, g.nq * g.size - call.q_len), value=True)  # padded queries: no veto
        if g.nk * g.size != call.k_len:
            m = F.pad(m, (0, g.nk * g.size - call.k_len), value=False)  # [Bm, nq*size, nk*size]
        return m.reshape(m.shape[0], g.nq, g.size, g.nk, g.size).all(4).all(2)
    q_first = g.q_positions()[:, :1]  # [nq, 1]
    q_last = (q_first + g.size - 1).clamp(max=call.k_len - 1)
    k_first = torch.arange(g.nk, device=g.device)[None, :] * g.size  # [1, nk]
    k_last = k_first + g.size - 1
    full = k_last < call.k_len
    if call.causal:
        full = full & (k_last <= q_first)
        if call.sliding_window is not None:
            full = full & (q_last - k_first < call.sliding_window)
    elif call.sliding_window is not None:  # a symmetric window: every pair closer than it
        full = full & (q_last - k_first < call.sliding_window) & (k_last - q_first < call.sliding_window)
    return full.expand(g.nq, g.nk)[None]


def _token_mask(call: AttnCall, g: Grid, b_of, j_of, kpos: torch.Tensor, rule, hs_of=None,
                per_query: torch.Tensor | None = None) -> torch.Tensor:
    """Which gathered keys each query of each row sees: bool [N, size, S].

    b_of, hs_of, j_of: batch row, selection head and query block of each of the N rows;
    kpos [N, S] key positions (>= K marks an unselected slot); per_query: optional
    bool [B, Hs, Q, nk], the key blocks each query itself chose. Built from one int32
    offset tensor to stay cheap.
    """
    qpos = (g.q_offset + j_of[:, None] * g.size + torch.arange(g.size, device=g.device)).int()  # [N, size]
    qp, kp = qpos[:, :, None], kpos.int()[:, None, :]  # [N, size, 1], [N, 1, S]
    delta = qp - kp  # [N, size, S] query position minus key position
    q_idx = qp - g.q_offset  # [N, size, 1] query index in the call
    vis = (kp < call.k_len) & (q_idx < call.q_len)
    # the model's visibility (`core.scores`) at the gathered keys; padded slots read index 0 and are masked above
    vis = vis & sc.visible_at(call, b_of[:, None, None], q_idx.clamp(max=call.q_len - 1).long(),
                              kp.clamp(max=call.k_len - 1).long())
    if rule is not None:
        vis = vis & rule(delta, kp, b_of[:, None, None])
    if per_query is not None:
        q_row = (qp - g.q_offset).clamp(max=call.q_len - 1).long()  # [N, size, 1]
        k_blk = (kp // g.size).clamp(max=g.nk - 1).long()  # [N, 1, S]
        vis = vis & per_query[b_of[:, None, None], hs_of[:, None, None], q_row, k_blk]
    return vis


def _attention(q, k, v, mask, call: AttnCall) -> tuple[torch.Tensor, torch.Tensor]:
    """q [N, R, L, D] on k, v [N, 1, S, D] (shared by the R heads), additive mask [N, 1, L, S]
    or None: output [N, R, L, Dv] and log-sum-exp [N, R, L] fp32."""
    n, r = q.shape[:2]
    if call.softcap is None and q.device.type == "cpu" and q.shape[-1] == v.shape[-1]:
        # PyTorch's CPU flash kernel returns the log-sum-exp with the output (private op)
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k.expand(n, r, -1, -1), v.expand(n, r, -1, -1), 0.0, False, attn_mask=mask, scale=call.scaling)
        return out, lse.float()
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * call.scaling  # [N, R, L, S]
    if call.softcap is not None:
        scores = torch.tanh(scores / call.softcap) * call.softcap
    if mask is not None:
        scores = scores + mask.float()
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse.nan_to_num(neginf=0.0)[..., None])
    return torch.matmul(probs.to(v.dtype), v), lse


def _merge(o1, l1, o2, l2):
    """Combine two partial softmax attentions over disjoint key sets by their log-sum-exps."""
    return sc.merge(o1, l1, o2, l2)[0]


@dataclass
class _Rows:
    """The N = B*Hs*nq work rows (batch row, selection head, query block) and their key blocks."""

    order: torch.Tensor  # [N, nk] key blocks, unmasked-full first, then masked, then unselected
    n_full: torch.Tensor  # [N] leading blocks needing no token mask
    n_sel: torch.Tensor  # [N] selected blocks
    hs: int


def _rows(call: AttnCall, g: Grid, blocks: torch.Tensor, partial: torch.Tensor | None) -> _Rows:
    b = call.batch
    if blocks.shape[1] == 1:
        blocks = blocks.expand(-1, call.num_kv_heads, -1, -1)
    hs = blocks.shape[1]
    sel = (blocks & reachable(call, g)).expand(b, hs, g.nq, g.nk)
    full = sel & layer_full(call, g)[:, None]
    if partial is not None:
        full = full & ~partial
    rank = (sel.to(torch.int8) + full.to(torch.int8)).reshape(-1, g.nk)  # 2 full, 1 masked, 0 not taken
    order = torch.sort(rank, dim=-1, descending=True, stable=True).indices
    n_full = full.reshape(-1, g.nk).sum(-1)
    return _Rows(order, n_full, sel.reshape(-1, g.nk).sum(-1), hs)


def _chunks(rows: _Rows, bytes_per_block: int) -> list[torch.Tensor]:
    """Row indices in chunks of similar `n_full` (a chunk runs min(n_full) blocks unmasked,
    so a row masks at most ~25% extra blocks), each under CHUNK_BYTES."""
    perm = torch.argsort(rows.n_full * (rows.order.shape[1] + 1) + rows.n_sel)
    n_full = rows.n_full[perm].tolist()
    n_sel = rows.n_sel[perm].tolist()
    chunks, start, widest = [], 0, 1
    for i in range(len(perm)):
        widest = max(widest, n_sel[i])
        spread = n_full[i] - n_full[start] > n_full[start] // 4
        if i > start and (spread or (i - start + 1) * widest * bytes_per_block > CHUNK_BYTES):
            chunks.append(perm[start:i])
            start, widest = i, max(1, n_sel[i])
    chunks.append(perm[start:])
    return chunks


def attend(call: AttnCall, blocks: torch.Tensor, size: int, rule: Callable | None = None,
           partial: torch.Tensor | None = None, per_query: torch.Tensor | None = None) -> KernelOutput:
    """Exact attention restricted to the selected key blocks; output [B, Q, H, Dv].

    blocks:  bool [B|1, Hs, nq, nk], Hs = H_kv (a GQA group shares), H (per head) or 1.
    rule:    optional fn(delta [N, size, S], kpos [N, 1, S], batch_row [N, 1, 1]) -> bool, a
             token-level pattern inside the selected blocks (delta = query position - key
             position, int32; kpos absolute key positions).
    partial: bool like `blocks`: blocks where `rule` may hide keys (needed with a rule).
    per_query: optional bool [B, Hs, Q, nk], the key blocks each query chose for itself
             (Hs = H_kv or H); then `blocks` and `partial` are its union per query block
             (`union_blocks`) and each query sees only its own blocks.
    Blocks the model shows in full run without any mask; the rest with a token mask; the
    two are merged by log-sum-exp. density = visible query-key pairs computed / visible pairs.
    """
    g = grid(call, size)
    b, h, h_kv = call.batch, call.num_heads, call.num_kv_heads
    if per_query is not None:
        per_query = per_query.expand(b, h_kv if per_query.shape[1] == 1 else per_query.shape[1], -1, -1)
        blocks, partial = union_blocks(call, g, per_query)
    rows = _rows(call, g, blocks, partial)
    r = h // rows.hs
    q = F.pad(call.query, (0, 0, 0, g.nq * size - call.q_len)).view(b, rows.hs, r, g.nq, size, -1)
    q = q.transpose(2, 3).reshape(b * rows.hs * g.nq, r, size, -1)  # [rows, R, size, D]
    keys = F.pad(call.key, (0, 0, 0, g.nk * size - call.k_len)).reshape(b * h_kv * g.nk, size, -1)
    values = F.pad(call.value, (0, 0, 0, g.nk * size - call.k_len)).reshape(b * h_kv * g.nk, size, -1)
    out = q.new_empty(q.shape[:3] + (values.shape[-1],))  # [rows, R, size, Dv]
    real = (call.q_len - torch.arange(g.nq, device=g.device) * size).clamp(max=size)  # real query rows per block
    computed = 0
    for idx in _chunks(rows, 4 * r * size * size):
        b_of, hs_of, j_of = idx // (rows.hs * g.nq), (idx // g.nq) % rows.hs, idx % g.nq
        kf, ks = int(rows.n_full[idx].min()), int(rows.n_sel[idx].max())
        sel = rows.order[idx, :ks]  # [N, ks]
        flat = ((b_of * h_kv + hs_of // (rows.hs // h_kv)) * g.nk)[:, None] + sel  # [N, ks] into keys
        kc = keys.index_select(0, flat.flatten()).view(len(idx), 1, ks * size, -1)  # [N, 1, S, D]
        vc = values.index_select(0, flat.flatten()).view(len(idx), 1, ks * size, -1)
        qc = q.index_select(0, idx)  # [N, R, size, D]
        o, lse = None, None
        if kf:
            o, lse = _attention(qc, kc[:, :, :kf * size], vc[:, :, :kf * size], None, call)
            computed += int((real[j_of] * kf * size).sum()) * r
        if ks > kf:
            taken = torch.arange(ks - kf, device=g.device) < (rows.n_sel[idx] - kf)[:, None]  # [N, ks-kf]
            kpos = (sel[:, kf:, None] * size + torch.arange(size, device=g.device)).flatten(1)  # [N, S]
            kpos = kpos.masked_fill(~taken.repeat_interleave(size, -1), call.k_len)
            vis = _token_mask(call, g, b_of, j_of, kpos, rule, hs_of, per_query)  # [N, size, S]
            seen = vis.sum(-1)  # [N, size]
            computed += int(seen.sum()) * r
            add = torch.where(vis, 0.0, -torch.inf).to(qc.dtype)[:, None]  # [N, 1, size, S]
            o2, l2 = _attention(qc, kc[:, :, kf * size:], vc[:, :, kf * size:], add, call)
            l2 = l2.masked_fill((seen == 0)[:, None], -torch.inf)  # the kernel reports 0 for empty rows
            o, lse = (o2, l2) if o is None else (_merge(o, lse, o2, l2), None)
        if o is None:  # no row of the chunk selected a block (padding queries)
            o = qc.new_zeros(qc.shape[:3] + (values.shape[-1],))
        out.index_copy_(0, idx, o)
    out = out.view(b, rows.hs, g.nq, r, size, -1).permute(0, 2, 4, 1, 3, 5)
    out = out.reshape(b, g.nq * size, h, -1)[:, :call.q_len]  # [B, Q, H, Dv]
    total = visible_pairs(call)
    return KernelOutput(output=out.contiguous(), density=computed / total if total else 1.0)


from .band import band, band_serves, covers_window, dense  # noqa: E402,F401  the fallbacks, kept at bk.*
