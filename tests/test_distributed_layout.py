"""Layouts and refusals of the ring kernels, without a process group (fast)."""

from __future__ import annotations

import pytest
import torch

from attnlab.core.call import AttnCall, RefusedCall, Site
from attnlab.core.hooks import Hooks
from attnlab.distributed.layout import LAYOUTS, padded_length, shard_index
from attnlab.kernels import KERNELS, eager


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_position_is_held_once_in_ascending_runs(layout, world):
    n = padded_length(37, layout, world)
    assert n >= 37 and n - 37 < 2 * world
    index = shard_index(n, layout, world)
    assert index.shape == (world, n // world)
    assert torch.equal(index.flatten().sort().values, torch.arange(n))
    assert bool((index[:, 1:] > index[:, :-1]).all())


def test_causal_work_per_layout():
    """Visible causal pairs per rank, counted from the layouts: ring is 1:3:5:7, striped and zigzag even."""
    n, world = 64, 4

    def pairs(layout):
        index = shard_index(n, layout, world)
        return [int((q[:, None] >= torch.arange(n)[None, :]).sum()) for q in index]

    ring = pairs("ring")
    assert ring == [136, 392, 648, 904]
    assert max(pairs("zigzag")) == min(pairs("zigzag"))
    assert max(pairs("striped")) / min(pairs("striped")) < 1.1


def test_uneven_length_is_refused_by_shard_index():
    with pytest.raises(ValueError, match="divisible by 8"):
        shard_index(20, "zigzag", 4)


def _call(**over):
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 4, 12, 8, generator=g), torch.randn(2, 2, 12, 8, generator=g), torch.randn(2, 2, 12, 8, generator=g)
    return AttnCall(Site("decoder", "self", 0), q, k, v, None, 8 ** -0.5, True, **over)


@pytest.mark.parametrize("name", ["ring", "striped"])
def test_ring_of_one_equals_eager_without_a_process_group(name):
    call = _call(sliding_window=5)
    got = KERNELS[name].forward(call, Hooks(), block_size=4, key_block=4).output
    assert (got - eager.forward(call, Hooks()).output).abs().max() <= 1e-6


@pytest.mark.parametrize("name", ["ring", "striped"])
def test_refusals(name):
    with pytest.raises(RefusedCall, match="sink logits"):
        KERNELS[name].forward(_call(sinks=torch.zeros(4)), Hooks())
    with pytest.raises(TypeError, match="context must be a RingContext"):
        KERNELS[name].forward(_call(), Hooks(), context="rank 0")

    class Observer:
        def on_probs(self, call, q_start, probs):
            pass

    with pytest.raises(RefusedCall, match="modifiers or observers"):
        KERNELS[name].forward(_call(), Hooks(observers=(Observer(),)))


def test_no_process_group_and_no_torchrun_environment_is_a_clear_error(monkeypatch):
    from attnlab.distributed.comm import DistributedError, ensure_group

    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(DistributedError, match="torchrun --nproc-per-node"):
        ensure_group()
