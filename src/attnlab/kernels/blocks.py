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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..call import AttnCall, KernelOutput
from ..hooks import Hooks

CHUNK_BYTES = 1 << 27  # bound on one chunk's mask/score tensor (128 MiB)


@dataclass(frozen=True)
class Grid:
    """Block geometry of one call: block size, query blocks nq, key blocks nk."""

    size: int
    nq: int
    nk: int
    q_offset: int

    def q_positions(self) -> torch.Tensor:
        """Absolute key position of every (padded) query row: [nq, size]."""
        return self.q_offset + torch.arange(self.nq * self.size).view(self.nq, self.size)

    def block_of_query(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Key blocks holding the first and the last query of each query block: [nq], [nq]."""
        pos = self.q_positions()
        return pos[:, 0] // self.size, pos[:, -1] // self.size


def grid(call: AttnCall, size: int) -> Grid:
    if size < 1:
        raise ValueError(f"block size must be >= 1, got {size}")
    return Grid(size, -(-call.q_len // size), -(-call.k_len // size), call.q_offset)


def check_supported(call: AttnCall, kernel: str) -> None:
    """Sparse kernels take bool masks shared by all heads and no additive bias."""
    if call.bias is not None:
        raise ValueError(f"layer {call.layer}: kernel {kernel!r} does not support additive attention biases; "
                         "use 'chunked' or 'eager'")
    if call.mask is not None and call.mask.shape[1] != 1:
        raise ValueError(f"layer {call.layer}: kernel {kernel!r} needs a mask shared by all heads")


def dense(call: AttnCall, hooks: Hooks) -> KernelOutput:
    """The dense fallback (documented `min_len` / decode policies): output [B, Q, H, Dv].

    Fused SDPA on the model's own visibility (GQA without copying keys); `chunked` when
    the call has a softcap or a bias, which SDPA cannot apply.
    """
    from . import chunked

    if call.softcap is not None or call.bias is not None:
        return chunked.forward(call, hooks)
    mask, is_causal = call.mask, False
    if mask is None and call.causal:
        windowed = call.sliding_window is not None and call.sliding_window < call.k_len
        if call.q_offset == 0 and not windowed:
            is_causal = True  # SDPA's causal rule is top-left aligned: right only without a cache
        else:
            mask = call.visible()
    out = F.scaled_dot_product_attention(call.query, call.key, call.value, attn_mask=mask, is_causal=is_causal,
                                         scale=call.scaling, enable_gqa=call.groups > 1)  # [B, H, Q, Dv]
    return KernelOutput(output=out.transpose(1, 2).contiguous(), density=1.0)


def reachable(call: AttnCall, g: Grid) -> torch.Tensor:
    """Key blocks some query of each query block may see by position alone: bool [nq, nk]."""
    first, last = g.block_of_query()  # [nq]
    blocks = torch.arange(g.nk)[None, :]  # [1, nk]
    ok = torch.ones(g.nq, g.nk, dtype=torch.bool)
    if call.causal:
        ok &= blocks <= last[:, None]
        if call.sliding_window is not None:
            lowest = (g.q_positions()[:, 0] - call.sliding_window + 1).clamp(min=0) // g.size
            ok &= blocks >= lowest[:, None]
    return ok


def first_keys(call: AttnCall) -> torch.Tensor:
    """Index of the first key each batch row really has (after left padding): long [B]."""
    if call.mask is None:
        return torch.zeros(call.batch, dtype=torch.long)
    row = call.mask[:, 0, -1, :].expand(call.batch, -1)  # [B, K] keys the last query sees
    return row.to(torch.int8).argmax(-1)


def visible_pairs(call: AttnCall) -> float:
    """Number of (query head, query, key) triples the model lets attend, over the batch."""
    if call.mask is not None:
        per_row = call.mask.sum().item() * (call.batch // call.mask.shape[0])
        return float(per_row * call.num_heads)
    if not call.causal:
        return float(call.batch * call.num_heads * call.q_len * call.k_len)
    seen = torch.arange(call.q_len) + call.q_offset + 1  # keys each query sees
    if call.sliding_window is not None:
        seen = seen.clamp(max=call.sliding_window)
    return float(call.batch * call.num_heads * seen.sum().item())


def _token_mask(call: AttnCall, g: Grid, j0: int, j1: int, kpos: torch.Tensor, rule) -> torch.Tensor:
    """Which gathered keys each query row sees: bool [B, Hs, c, size, S]; kpos [B, Hs, c, S]."""
    qpos = g.q_positions()[j0:j1][:, :, None]  # [c, size, 1]
    kp = kpos[:, :, :, None, :]  # [B, Hs, c, 1, S]
    vis = (kp < call.k_len) & (qpos - g.q_offset < call.q_len)
    if call.mask is None:
        if call.causal:
            vis = vis & (kp <= qpos)
        if call.sliding_window is not None:
            vis = vis & (kp > qpos - call.sliding_window)
    else:
        rows = F.pad(call.mask[:, 0], (0, 0, 0, g.nq * g.size - call.q_len))  # [Bm, nq*size, K]
        rows = rows.view(rows.shape[0], g.nq, g.size, -1)[:, j0:j1].unsqueeze(1)  # [Bm, 1, c, size, K]
        b, hs, c, s = kpos.shape
        index = kp.clamp(max=call.k_len - 1).expand(b, hs, c, g.size, s)
        vis = vis & rows.expand(b, hs, c, g.size, -1).gather(-1, index)
    if rule is not None:
        vis = vis & rule(qpos, kp)
    return vis


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, call: AttnCall) -> torch.Tensor:
    """Attention of q [N, Rq, D] on k, v [N, S, D] under mask [N, Rq, S]: [N, Rq, Dv]."""
    if call.softcap is None:
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], attn_mask=mask[:, None],
                                             scale=call.scaling)
        return out[:, 0]
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * call.scaling  # [N, Rq, S]
    scores = torch.tanh(scores / call.softcap) * call.softcap
    probs = torch.softmax(scores.masked_fill(~mask, torch.finfo(scores.dtype).min), dim=-1)
    return torch.matmul(probs.to(v.dtype), v)


def attend(call: AttnCall, blocks: torch.Tensor, size: int, rule: Callable | None = None) -> KernelOutput:
    """Exact attention restricted to the selected key blocks; output [B, Q, H, Dv].

    blocks: bool [B|1, Hs, nq, nk], Hs = H_kv (GQA group shares) or H (per head) or 1.
    rule:   optional fn(qpos [c, size, 1], kpos [B, Hs, c, 1, S]) -> bool, a token-level
            pattern applied inside the selected blocks (absolute positions).
    density = visible query-key pairs computed / visible pairs.
    """
    g = grid(call, size)
    b, h, h_kv = call.batch, call.num_heads, call.num_kv_heads
    if blocks.shape[1] == 1:
        blocks = blocks.expand(-1, h_kv, -1, -1)
    hs = blocks.shape[1]
    r = h // hs  # query heads per selection head
    blocks = (blocks & reachable(call, g)).expand(b, hs, g.nq, g.nk)
    counts = blocks.sum(-1)  # [B, Hs, nq]
    order = torch.sort(blocks.to(torch.int8), dim=-1, descending=True, stable=True).indices  # selected first
    ks_max = max(1, int(counts.max()))
    chunk = max(1, CHUNK_BYTES // (4 * b * h * size * size * ks_max))  # fp32-sized mask per chunk
    q = F.pad(call.query, (0, 0, 0, g.nq * size - call.q_len)).view(b, hs, r, g.nq, size, -1)
    keys = F.pad(call.key, (0, 0, 0, g.nk * size - call.k_len)).view(b, h_kv, g.nk, size, -1)
    values = F.pad(call.value, (0, 0, 0, g.nk * size - call.k_len)).view(b, h_kv, g.nk, size, -1)
    bi = torch.arange(b)[:, None, None, None]
    hi = (torch.arange(hs) // (hs // h_kv))[None, :, None, None]
    outs, computed = [], 0
    for j0 in range(0, g.nq, chunk):
        j1 = min(g.nq, j0 + chunk)
        ks = max(1, int(counts[:, :, j0:j1].max()))
        sel = order[:, :, j0:j1, :ks]  # [B, Hs, c, ks]
        taken = torch.arange(ks) < counts[:, :, j0:j1, None]  # [B, Hs, c, ks]
        kpos = (sel[..., None] * size + torch.arange(size)).flatten(-2)  # [B, Hs, c, S]
        kpos = kpos.masked_fill(~taken.repeat_interleave(size, -1), call.k_len)  # unselected -> out of range
        vis = _token_mask(call, g, j0, j1, kpos, rule)  # [B, Hs, c, size, S]
        computed += int(vis.sum()) * r
        vis[..., 0] |= ~vis.any(-1)  # rows that see nothing (padding) read one key instead of NaN
        c, s = j1 - j0, ks * size
        n = b * hs * c
        qc = q[:, :, :, j0:j1].transpose(2, 3).reshape(n, r * size, -1)  # [N, R*size, D]
        kc = keys[bi, hi, sel].reshape(n, s, -1)  # [N, S, D]
        vc = values[bi, hi, sel].reshape(n, s, -1)  # [N, S, Dv]
        mask = vis.unsqueeze(3).expand(b, hs, c, r, size, s).reshape(n, r * size, s)
        outs.append(_sdpa(qc, kc, vc, mask, call).view(b, hs, c, r, size, -1))
    out = torch.cat(outs, dim=2)  # [B, Hs, nq, R, size, Dv]
    out = out.permute(0, 2, 4, 1, 3, 5).reshape(b, g.nq * size, h, -1)[:, :call.q_len]  # [B, Q, H, Dv]
    total = visible_pairs(call)
    return KernelOutput(output=out.contiguous(), density=computed / total if total else 1.0)
