"""`streaming` computes exactly sinks + window: against eager under the same pattern as a mask."""

import dataclasses

import pytest
import torch

from attnlab.core.hooks import Hooks
from attnlab.kernels import eager, streaming
from test_kernels_chunked import _call


def _pattern_reference(call, sinks, window, starts):
    q = torch.arange(call.q_len)[:, None] + call.q_offset  # [Q, 1]
    k = torch.arange(call.k_len)[None, :]  # [1, K]
    start = torch.tensor(starts).view(-1, 1, 1, 1)  # [B, 1, 1, 1]
    keep = (k - start < sinks) | (q - k < window)  # [B, 1, Q, K]
    mask = call.visible() & keep
    return eager.forward(dataclasses.replace(call, mask=mask), Hooks()).output


@pytest.mark.parametrize("case", [dict(), dict(pad=6), dict(h_kv=1), dict(window=4), dict(q=1, k=40),
                                  dict(q=9, k=40), dict(softcap=3.0)])
@pytest.mark.parametrize("sinks,window,block", [(2, 5, 4), (0, 7, 8), (4, 3, 64)])
def test_streaming_equals_eager_under_its_pattern(case, sinks, window, block):
    call = _call(**case)
    pad = case.get("pad", 0)
    ref = _pattern_reference(call, sinks, window, [0, pad])
    out = streaming.forward(call, Hooks(), sinks=sinks, window=window, block_size=block)
    diff = (out.output - ref).abs()
    diff[1, :pad] = 0
    assert float(diff.max()) < 1e-5


def test_streaming_density_by_hand():
    # 8 causal queries, sink 1, window 2: query i computes {0, i-1, i} -> 1 + 2 + 6*3 = 21 of 36 pairs
    call = _call(b=1, h=2, h_kv=1, q=8, k=8)
    out = streaming.forward(call, Hooks(), sinks=1, window=2, block_size=2)
    assert out.density == pytest.approx(21 / 36)
    # sinks=0: plain window, 1 + 7*2 = 15 of 36
    assert streaming.forward(call, Hooks(), sinks=0, window=2, block_size=3).density == pytest.approx(15 / 36)


def test_streaming_rejects_bad_budget():
    with pytest.raises(ValueError, match="window"):
        streaming.forward(_call(), Hooks(), window=0)
