"""`window` (GNA family): neighborhood, strided and blocked patterns against eager under a
mask written from the definition, and densities counted by hand."""

import dataclasses

import pytest
import torch

from attnlab.core.hooks import Hooks
from attnlab.kernels import eager, window
from test_kernels_chunked import _call


def _reference_mask(call, size, stride, starts):
    """[B, 1, Q, K] straight from the definition, one query at a time."""
    keep = torch.zeros(call.batch, 1, call.q_len, call.k_len, dtype=torch.bool)
    for b, start in enumerate(starts):
        for i in range(call.q_len):
            q = i + call.q_offset - start
            group = (q // stride) * stride
            if call.causal:
                lo, hi = group + stride - size, q
            else:
                lo = min(max(group + stride // 2 - size // 2, 0), max(call.k_len - start - size, 0))
                hi = lo + size - 1
            for k in range(call.k_len):
                keep[b, 0, i, k] = lo <= k - start <= hi
    return call.visible() & keep


@pytest.mark.parametrize("case", [dict(), dict(pad=6), dict(h_kv=1), dict(q=1, k=40), dict(q=9, k=40),
                                  dict(causal=False), dict(window=5)])
@pytest.mark.parametrize("size,stride,block", [(6, 1, 4), (6, 3, 8), (4, 4, 4), (7, 2, 64)])
def test_window_equals_eager_under_its_definition(case, size, stride, block):
    call = _call(**case)
    pad = case.get("pad", 0)
    mask = _reference_mask(call, size, stride, [0, pad])
    ref = eager.forward(dataclasses.replace(call, mask=mask), Hooks()).output
    out = window.forward(call, Hooks(), window=size, stride=stride, block_size=block)
    diff = (out.output - ref).abs()
    diff[1, :pad] = 0
    assert float(diff.max()) < 1e-5


@pytest.mark.parametrize("size,stride,pairs", [(2, 1, 15), (4, 4, 20), (4, 2, 24)])
def test_window_density_by_hand(size, stride, pairs):
    # 8 causal queries (36 visible pairs): window 2 -> 1 + 7*2 = 15; blocked 4 -> 2*(1+2+3+4) = 20;
    # window 4 stride 2: leader of q is q|1, keys > leader-4 -> 1,2,3,4,3,4,3,4 = 24
    call = _call(b=1, h=2, h_kv=1, q=8, k=8)
    assert window.forward(call, Hooks(), window=size, stride=stride, block_size=3).density == pytest.approx(pairs / 36)


def test_window_rejects_bad_stride():
    with pytest.raises(ValueError, match="stride"):
        window.forward(_call(), Hooks(), window=4, stride=5)
