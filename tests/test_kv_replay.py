"""kv.replay (one prefill, many policies; what benchmarks/kv_*.py measure with) gives exactly
the tokens of model.generate() under attach(kv=...), also on a model with sliding-window
layers (Gemma3: those layers keep the model's own bounded cache)."""

import pytest
import torch

import tiny
from attnlab import attach
from attnlab.kv import replay
from attnlab.kv.cache import CompressedLayer

SPECS = ["none", "snapkv:ratio=0.5", "streaming:ratio=0.5", "h2o:ratio=0.75,keep_last=3", "knorm:budget=9"]


def _prompt(vocab: int, length: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randint(3, vocab, (1, length), generator=g)


@pytest.mark.parametrize("build", [tiny.llama, tiny.gemma3], ids=["llama", "gemma3"])
@pytest.mark.parametrize("spec", SPECS)
def test_replay_equals_generate_under_attach(build, spec):
    model = build()
    ids = _prompt(model.config.vocab_size)
    new = 6
    with torch.no_grad(), attach(model, kv=spec):
        want = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                              do_sample=False, min_new_tokens=new)[:, ids.shape[1]:]
    pre = replay.capture(model, ids)
    cache = replay.build_cache(model, pre, spec)
    got, stats = replay.greedy(model, cache, pre.next_token, new, spec)
    assert torch.equal(got, want), (got, want)
    kinds = [type(layer).__name__ for layer in cache.layers]
    if build is tiny.gemma3:  # sliding layers keep transformers' own window layer, the global layer is compressible
        assert kinds == ["DynamicSlidingWindowLayer", "DynamicSlidingWindowLayer", "CompressedLayer"]
    full = [layer for layer in cache.layers if isinstance(layer, CompressedLayer)]
    if spec == "snapkv:ratio=0.5":  # half the 24 prompt tokens kept, plus the new - 1 decoded
        assert all(int(layer.visible_counts().max()) == 12 + new - 1 for layer in full)
    assert stats["kv_bytes"] > 0
    window = sum(l.keys.numel() * 4 * 2 for l in cache.layers if not isinstance(l, CompressedLayer))
    assert stats["kv_bytes_left_alone"] == window and (window > 0) == (build is tiny.gemma3)
