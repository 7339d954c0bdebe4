"""`block_topk` keeps exactly the sink, local and top-scoring key blocks: against naive
loop selections (per query, the causal default; per query block from the mean query,
pool="mean") applied to eager as a mask, and a density counted by hand."""

import dataclasses

import pytest
import torch

from attnlab.core.hooks import Hooks
from attnlab.kernels import block_topk, eager
from test_kernels_chunked import _call


def _kept(scores, j: int, topk: int, sink: int, local: int) -> set[int]:
    """Key blocks 0..j one selection head keeps: the sink and local blocks, then the topk best."""
    forced = set(range(min(sink, j + 1))) | set(range(max(0, j - local + 1), j + 1))
    rest = sorted((i for i in range(j + 1) if i not in forced), key=lambda i: -float(scores[i]))
    return forced | set(rest[:topk])


def _naive_query_blocks(call, size, topk, sink, local, per_head):
    """Loop-by-loop per-query selection (pool="query"), causal prefill without padding:
    bool [B, Hs, Q, nk]. Query p scores block i < p // size by q_p . mean key of the block,
    and its own block by q_p . mean of the block's keys up to p."""
    b, h, n, _ = call.query.shape
    nb = -(-n // size)
    hs = h if per_head else call.num_kv_heads
    chosen = torch.zeros(b, hs, n, nb, dtype=torch.bool)
    for bi in range(b):
        for p in range(n):
            j = p // size
            km = [call.key[bi, :, i * size:min((i + 1) * size, p + 1)].mean(1) for i in range(j + 1)]
            km = torch.stack(km, 1).repeat_interleave(call.groups, 0)  # [H, j+1, D]
            scores = torch.einsum("hd,hid->hi", call.query[bi, :, p], km) * call.scaling  # [H, j+1]
            if not per_head:
                scores = scores.softmax(-1).view(call.num_kv_heads, call.groups, -1).mean(1)
            for s in range(hs):
                for i in _kept(scores[s], j, topk, sink, local):
                    chosen[bi, s, p, i] = True
    return chosen


def _naive_blocks(call, size, topk, sink, local, per_head):
    """Loop-by-loop selection from each query block's mean query (pool="mean"), causal
    prefill without padding: bool [B, Hs, nq, nk]."""
    b, h, n, _ = call.query.shape
    nb = -(-n // size)
    groups = call.groups
    hs = h if per_head else call.num_kv_heads
    chosen = torch.zeros(b, hs, nb, nb, dtype=torch.bool)
    for bi in range(b):
        for j in range(nb):
            qm = call.query[bi, :, j * size:(j + 1) * size].mean(1)  # [H, D]
            km = torch.stack([call.key[bi, :, i * size:(i + 1) * size].mean(1) for i in range(j + 1)], 1)
            scores = torch.einsum("hd,hid->hi", qm, km.repeat_interleave(groups, 0)) * call.scaling  # [H, j+1]
            if not per_head:
                scores = scores.softmax(-1).view(call.num_kv_heads, groups, -1).mean(1)
            for s in range(hs):
                for i in _kept(scores[s], j, topk, sink, local):
                    chosen[bi, s, j, i] = True
    return chosen


@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("topk,sink,local", [(1, 1, 1), (2, 0, 2), (0, 1, 1)])
def test_block_topk_equals_eager_under_naive_selection(per_head, topk, sink, local):
    call = _call(b=2, h=4, h_kv=2, q=40, k=40)
    size = 4
    chosen = _naive_blocks(call, size, topk, sink, local, per_head)  # [B, Hs, nq, nk]
    token = chosen.repeat_interleave(size, 2).repeat_interleave(size, 3)[:, :, :40, :40]
    token = token.repeat_interleave(call.num_heads // chosen.shape[1], 1)  # [B, H, Q, K]
    ref = eager.forward(dataclasses.replace(call, mask=call.visible() & token), Hooks()).output
    out = block_topk.forward(call, Hooks(), topk=topk, sink=sink, local=local, block_size=size, per_head=per_head,
                             pool="mean")
    assert float((out.output - ref).abs().max()) < 1e-5


@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("topk,sink,local", [(1, 1, 1), (2, 0, 2), (0, 1, 1)])
def test_block_topk_equals_eager_under_naive_per_query_selection(per_head, topk, sink, local):
    call = _call(b=2, h=4, h_kv=2, q=40, k=40)
    size = 4
    chosen = _naive_query_blocks(call, size, topk, sink, local, per_head)  # [B, Hs, Q, nk]
    token = chosen.repeat_interleave(size, 3)[..., :40]  # [B, Hs, Q, K]
    token = token.repeat_interleave(call.num_heads // chosen.shape[1], 1)  # [B, H, Q, K]
    ref = eager.forward(dataclasses.replace(call, mask=call.visible() & token), Hooks()).output
    out = block_topk.forward(call, Hooks(), topk=topk, sink=sink, local=local, block_size=size, per_head=per_head)
    assert float((out.output - ref).abs().max()) < 1e-5
    visible = call.visible().sum() * call.batch * call.num_heads
    assert out.density == pytest.approx(float((call.visible() & token).sum()) / float(visible))


def test_block_topk_density_by_hand():
    # 8 causal queries in blocks of 2, sink 1 + local 1 + top 0: block j sees blocks {0, j}
    # block 0: 3 pairs; blocks 1..3: 4 (sink block) + 3 (diagonal) = 7 each -> 24 of 36
    call = _call(b=1, h=2, h_kv=1, q=8, k=8)
    out = block_topk.forward(call, Hooks(), topk=0, sink=1, local=1, block_size=2)
    assert out.density == pytest.approx(24 / 36)


def test_block_topk_rejects_bad_budget():
    with pytest.raises(ValueError, match="local"):
        block_topk.forward(_call(), Hooks(), local=0)
    with pytest.raises(ValueError, match="pool"):
        block_topk.forward(_call(), Hooks(), pool="max")
