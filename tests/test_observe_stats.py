"""Streaming per-head statistics equal the ones computed from full eager attention maps."""

import pytest
import torch

import tiny
from attnlab.observe.heads import run_stats
from attnlab.observe.reference import stats_from_maps
from attnlab.observe.stats import SCALARS

TOL = 1e-4


def _maps(model, enc):
    """Stock eager attention maps (no attnlab involved): per-layer [B, H, T, T]."""
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            return getattr(model, "base_model", model)(**enc, output_attentions=True).attentions
    finally:
        model.set_attn_implementation("sdpa")


def _windows(model):
    cfg = model.config
    types = getattr(cfg, "layer_types", None) or []
    return [cfg.sliding_window if t == "sliding_attention" else None for t in types] or None


def _compare(model, enc, causal, block_size, min_support=1, kernel="stats"):
    got = run_stats(model, enc, block_size=block_size, kernel=kernel).result()
    real = enc["attention_mask"].bool()
    ref = stats_from_maps(_maps(model, enc), real, causal, _windows(model))
    assert sorted(got) == sorted(ref)
    for layer in ref:
        for name in SCALARS:
            diff = (got[layer][name] - ref[layer][name]).abs().max().item()
            assert diff < TOL, f"layer {layer} {name}: {diff}"
        support = got[layer]["support"].double()
        assert torch.equal(support, ref[layer]["support"]), f"layer {layer} support"
        ok = support.expand_as(ref[layer]["received"]) >= min_support
        diff = (got[layer]["received"].double() - ref[layer]["received"]).abs()[ok].max().item()
        assert diff < TOL, f"layer {layer} received: {diff}"
    return got, ref


def _enc(ids, mask):
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("kernel", ["stats", "eager"])
def test_gqa_llama_batch2_left_padding_blocks(kernel):
    model = tiny.llama()  # 4 query heads on 2 kv heads
    ids, mask = tiny.token_batch(batch=2, length=40, pad_left=9)
    got, _ = _compare(model, _enc(ids, mask), causal=True, block_size=7, kernel=kernel)
    assert got[0]["entropy"].shape == (4,)


def test_llama_right_padding_and_one_block():
    model = tiny.llama()
    ids, mask = tiny.token_batch(batch=2, length=33, pad_right=6, seed=3)
    _compare(model, _enc(ids, mask), causal=True, block_size=None)


def test_gemma3_sliding_window_shorter_than_input():
    model = tiny.gemma3(window=8)
    ids, mask = tiny.token_batch(batch=2, length=30, pad_left=4, seed=2)
    got, ref = _compare(model, _enc(ids, mask), causal=True, block_size=6)
    # the window shows: a sliding layer looks less far back than the global layer can
    assert float(got[0]["mean_distance"].max()) < 8


def test_gemma3_window_without_padding_mask_path():
    model = tiny.gemma3(window=8)
    ids, mask = tiny.token_batch(batch=1, length=26, seed=4)
    _compare(model, _enc(ids, mask), causal=True, block_size=5)


@pytest.mark.parametrize("kernel", ["stats", "eager"])
def test_bert_non_causal_batch2_padding(kernel):
    model = tiny.bert()
    ids, mask = tiny.token_batch(batch=2, length=28, pad_right=7, seed=5)
    got, _ = _compare(model, _enc(ids, mask), causal=False, block_size=9, kernel=kernel)
    # non-causal: distance is |i - j|, queries look both ways
    assert float(got[0]["mean_distance"].min()) > 0


@pytest.mark.parametrize("build", [tiny.llama, tiny.gemma3])
def test_outputs_unchanged_while_observing(build):
    import attnlab
    from attnlab.observe.stats import HeadStats
    from helpers import layer_diffs

    model = build()
    ids, mask = tiny.token_batch(batch=2, length=24, pad_left=5)
    run = dict(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    with torch.no_grad():
        stock = model(**run)
        with attnlab.attach(model, kernel="eager", block_size=4):
            plain = model(**run).logits
        with attnlab.attach(model, kernel="eager", observe=[HeadStats(real=mask)], block_size=4):
            seen = model(**run).logits
        fused_stats = HeadStats(real=mask)
        with attnlab.attach(model, kernel="stats", observe=[fused_stats], block_size=4):
            fused = model(**run)
    assert torch.equal(plain, seen)  # an observer never changes the eager kernel's output
    assert max(layer_diffs(stock, fused, keep=mask)) < 1e-5  # nor does the stats kernel, at every layer
    assert len(fused_stats.layers) == 3


def test_stats_kernel_defers_to_eager_for_plain_observers():
    import attnlab
    from helpers import CountCalls

    model = tiny.llama()
    ids, mask = tiny.token_batch(batch=1, length=12)
    with torch.no_grad():
        with attnlab.attach(model, kernel="eager"):
            ref = model(input_ids=ids).logits
        with attnlab.attach(model, kernel="stats", observe=[CountCalls()]):
            out = model(input_ids=ids).logits
    assert torch.equal(ref, out)


def test_probs_rows_sum_to_one_so_distance_is_exact():
    """Sanity of the causal identity used for speed: sum_j p_i(j)(i - j) = i - sum_j p_i(j) j."""
    model = tiny.qwen2()
    ids, mask = tiny.token_batch(batch=1, length=20)
    _compare(model, _enc(ids, mask), causal=True, block_size=3)


@pytest.mark.real
def test_real_smollm2_512_tokens_equal_eager_maps(smollm2):
    from attnlab.bench.corpora import passage
    from attnlab.text import encode

    model, tok = smollm2
    enc = encode(model, tok, passage(tok, 512))
    assert enc["input_ids"].shape[1] >= 500
    enc["attention_mask"] = torch.ones_like(enc["input_ids"])
    got, ref = _compare(model, enc, causal=True, block_size=128)
    assert len(got) == 30 and got[0]["entropy"].shape == (9,)


@pytest.mark.parametrize("self_logit", [0.5, -1e4])
def test_stats_kernel_lse_equals_logsumexp(self_logit):
    """lse from the own key's probability, and the fallback when that probability underflows."""
    from types import SimpleNamespace

    from attnlab.observe.fused import _lse

    torch.manual_seed(0)
    scores = torch.randn(1, 2, 4, 10) * 3  # queries 0..3 of a block starting at q0=6, keys lo=0..9
    call = SimpleNamespace(q_offset=0)
    rows = torch.arange(4)
    scores[:, :, rows, rows + 6] = self_logit  # each query's own key
    probs = torch.softmax(scores, dim=-1)
    got = _lse(call, scores, probs, q0=6, lo=0)
    assert torch.allclose(got, torch.logsumexp(scores, dim=-1), atol=1e-5)
