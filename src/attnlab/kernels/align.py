"""Row alignment (the content-selecting kernels, block_topk and flexprefill, via `aligned`):
a key block's mean depends on which keys share it, so the grid must sit on the SAME keys
in a left-padded row as in that sequence run alone. The rule: each row's grid starts at
its first real key (`first_keys`). Before selecting, a row whose first real key s is not
a multiple of the block size has its keys, values and mask rotated left by r = s % size
(its first r keys, padding, move to the end, where the mask and the causal rule hide
them); for queries that sit on the keys' own positions (prefill: q_offset < r) the queries
are rotated with them, so query i' stays on key i'. Rows then share one grid with
q_offset' = max(q_offset - r, 0); rows whose q_offset' differ (decode / extend on a cache:
the query is the last position, which moves by r) run as separate sub-batches, one per
distinct r (at most min(B, size) groups; no per-token loop). The output is rotated back;
padding query rows stay finite and meaningless. The rotated-in padding at a row's end is
excluded from key means (`Grid.k_end`), and no candidate block is one the mask hides
entirely from the query (`candidates`, `per_query.query_candidates`), so budget is never
spent on padding. Sliding-window calls keep the grid on key indices: once a decode step's
window has passed a row's first real token the mask no longer tells where the row began,
and a grid that moved with the window would break prefill + decode consistency.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from ..core.call import AttnCall, KernelOutput
from .blocks import Grid, first_keys, grid, visible_pairs


def _rotation(call: AttnCall, size: int) -> torch.Tensor | None:
    """Per row, how far `aligned` rotates its keys (first real key % size): long [B], or None
    when every row's real keys already start on a block boundary (or the call keeps its grid)."""
    if call.mask is None or not call.positional or call.sliding_window is not None:
        return None
    r = first_keys(call) % size
    return r if bool(r.any()) else None


def aligned(call: AttnCall, size: int, run: Callable[[AttnCall, Grid], KernelOutput]) -> KernelOutput:
    """`run(call, grid)` with every row's block grid starting at its first real key (the
    module docstring's row alignment rule); output [B, Q, H, Dv] in the call's own order."""
    r = _rotation(call, size)
    if r is None:
        return run(call, grid(call, size))
    b, q_len, k_len, qo = call.batch, call.q_len, call.k_len, call.q_offset
    c = (r - qo).clamp(min=0)  # query rotation: queries before position r are padding
    offsets = (qo - r).clamp(min=0)  # each row's q_offset once rotated
    kidx = (torch.arange(k_len, device=call.device)[None, :] + r[:, None]) % k_len  # [B, K] source key
    qidx = (torch.arange(q_len, device=call.device)[None, :] + c[:, None]) % q_len  # [B, Q] source query

    def rows_of(x: torch.Tensor, idx: torch.Tensor, dim: int) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[0], shape[dim] = b, idx.shape[1]
        return x.expand(b, *x.shape[1:]).gather(dim, idx.view(shape).expand(b, *x.shape[1:]))

    query = rows_of(call.query, qidx, 2)
    key, value = rows_of(call.key, kidx, 2), rows_of(call.value, kidx, 2)
    mask = rows_of(rows_of(call.mask, qidx, 2), kidx, 3)
    k_end = k_len - r
    out = call.query.new_empty(b, q_len, call.num_heads, call.value.shape[-1])
    computed, total = 0.0, 0.0
    for off in torch.unique(offsets).tolist():
        sel = (offsets == off).nonzero().flatten()
        whole = len(sel) == b
        pick = (lambda x: x) if whole else (lambda x: x.index_select(0, sel))
        sub = dataclasses.replace(call, query=pick(query), key=pick(key), value=pick(value), mask=pick(mask),
                                  q_start=call.k_start + off)
        result = run(sub, dataclasses.replace(grid(sub, size), k_end=pick(k_end)))
        pairs = visible_pairs(sub)
        computed, total = computed + result.density * pairs, total + pairs
        inv = (torch.arange(q_len, device=call.device)[None, :] - pick(c)[:, None]) % q_len  # [b', Q]
        o = result.output.gather(1, inv[:, :, None, None].expand(-1, -1, *result.output.shape[2:]))
        if whole:
            out = o
        else:
            out.index_copy_(0, sel, o)
    return KernelOutput(output=out.contiguous(), density=computed / total if total else 1.0)
