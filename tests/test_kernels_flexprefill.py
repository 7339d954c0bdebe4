"""`flexprefill`: its pieces by hand (mass threshold, JS distance, vertical-slash blocks),
the paper's choice of pattern by tau (estimate="last_block"), and exact attention inside
the blocks it selects (per query by default, against a loop-by-loop reference)."""

import dataclasses
import math

import pytest
import torch

from attnlab.core.hooks import Hooks
from attnlab.kernels import blocks as bk
from attnlab.kernels import eager, flexprefill
from test_kernels_chunked import _call


def test_keep_mass_keeps_the_fewest_entries_reaching_gamma():
    p = torch.tensor([[0.2, 0.5, 0.3]])
    assert bk.keep_mass(p, 0.6).tolist() == [[False, True, True]]
    assert bk.keep_mass(p, 0.5).tolist() == [[False, True, False]]
    assert bk.keep_mass(p, 1.0).tolist() == [[True, True, True]]


def test_js_distance_bounds():
    p = torch.tensor([0.5, 0.5, 0.0, 0.0])
    assert float(flexprefill.js_distance(p, p)) == pytest.approx(0.0, abs=1e-6)
    assert float(flexprefill.js_distance(p, p.flip(0))) == pytest.approx(math.sqrt(math.log(2)), rel=1e-5)


def test_vertical_slash_blocks_by_hand():
    # 16 keys in blocks of 4; the 4 estimated queries (positions 12..15) put all mass on key 1
    # (a vertical line) and on their own position (offset 0, the main diagonal); gamma 0.5
    # keeps exactly those two (the column's echo on offsets 11..14 is lighter).
    call = _call(b=1, h=1, h_kv=1, q=16, k=16)
    g = bk.grid(call, 4)
    probs = torch.zeros(1, 1, 4, 16)
    probs[..., 1] = 0.5
    probs[0, 0, torch.arange(4), 12 + torch.arange(4)] = 0.5
    blocks = flexprefill.vertical_slash(call, g, 0.5, probs)[0, 0]  # [nq, nk]
    expected = torch.eye(4, dtype=torch.bool)
    expected[:, 0] = True  # the column lives in key block 0
    assert torch.equal(blocks & torch.ones(4, 4, dtype=torch.bool).tril(), expected)


@pytest.mark.parametrize("tau,aware", [(0.0, False), (10.0, True)])
def test_tau_picks_the_pattern(tau, aware):
    call = _call(b=2, h=4, h_kv=2, q=48, k=48)
    chosen, was_aware = flexprefill.select(call, bk.grid(call, 4), 0.8, tau, per_head=True)
    assert bool(was_aware.all()) is aware and bool(was_aware.any()) is aware
    assert chosen.shape == (2, 4, 12, 12)


@pytest.mark.parametrize("per_head", [True, False])
def test_flexprefill_last_block_is_exact_inside_its_blocks(per_head):
    call = _call(b=2, h=4, h_kv=2, q=48, k=48)
    size = 4
    chosen, _ = flexprefill.select(call, bk.grid(call, size), 0.7, 0.1, per_head)
    token = chosen.repeat_interleave(size, 2).repeat_interleave(size, 3)
    token = token.repeat_interleave(call.num_heads // chosen.shape[1], 1)  # [B, H, Q, K]
    ref = eager.forward(dataclasses.replace(call, mask=call.visible() & token), Hooks()).output
    out = flexprefill.forward(call, Hooks(), gamma=0.7, tau=0.1, block_size=size, per_head=per_head,
                              estimate="last_block")
    assert float((out.output - ref).abs().max()) < 1e-5
    visible = call.visible().sum() * call.batch * call.num_heads
    assert out.density == pytest.approx(float((call.visible() & token).sum()) / float(visible))


def _naive_per_query(call, size, gamma):
    """Loop-by-loop estimate="query" choice, causal prefill without padding: bool [B, H, Q, nk].
    Query p: softmax over blocks i <= p // size of q_p . (mean of block i's keys up to p),
    the fewest reaching gamma, plus block 0 and its own block."""
    b, h, n, _ = call.query.shape
    chosen = torch.zeros(b, h, n, -(-n // size), dtype=torch.bool)
    for bi in range(b):
        for p in range(n):
            j = p // size
            km = [call.key[bi, :, i * size:min((i + 1) * size, p + 1)].mean(1) for i in range(j + 1)]
            km = torch.stack(km, 1).repeat_interleave(call.groups, 0)  # [H, j+1, D]
            probs = (torch.einsum("hd,hid->hi", call.query[bi, :, p], km) * call.scaling).softmax(-1)
            for hi in range(h):
                order = sorted(range(j + 1), key=lambda i: -float(probs[hi, i]))
                mass = 0.0
                for i in order:
                    if mass >= gamma:
                        break
                    chosen[bi, hi, p, i] = True
                    mass += float(probs[hi, i])
                chosen[bi, hi, p, 0] = chosen[bi, hi, p, j] = True
    return chosen


@pytest.mark.parametrize("per_head", [True, False])
def test_flexprefill_is_exact_inside_its_per_query_blocks(per_head):
    call = _call(b=2, h=4, h_kv=2, q=48, k=48)
    size = 4
    chosen = _naive_per_query(call, size, 0.7)  # [B, H, Q, nk]
    if not per_head:
        chosen = chosen.view(2, 2, 2, 48, -1).any(2).repeat_interleave(2, 1)
    token = chosen.repeat_interleave(size, 3)  # [B, H, Q, K]
    ref = eager.forward(dataclasses.replace(call, mask=call.visible() & token), Hooks()).output
    out = flexprefill.forward(call, Hooks(), gamma=0.7, block_size=size, per_head=per_head)
    assert float((out.output - ref).abs().max()) < 1e-5
    visible = call.visible().sum() * call.batch * call.num_heads
    assert out.density == pytest.approx(float((call.visible() & token).sum()) / float(visible))


def test_flexprefill_last_block_decode_is_dense():
    call = _call(q=1, k=40)
    out = flexprefill.forward(call, Hooks(), gamma=0.1, block_size=4, estimate="last_block")
    assert out.density == 1.0
    assert float((out.output - eager.forward(call, Hooks()).output).abs().max()) < 1e-5
