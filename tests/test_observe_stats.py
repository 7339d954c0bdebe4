"""Streaming per-head statistics equal the ones computed from full eager attention maps."""

import pytest
import torch

import tiny
from helpers import layers_of
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
    got = layers_of(run_stats(model, enc, block_size=block_size, kernel=kernel).result())
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
        # received is a sum over up to n queries (a sink's reaches hundreds) of two different fp32
        # softmaxes (the native kernel's and eager's): a few ulps of the sum on top of TOL
        want = ref[layer]["received"]
        diff = ((got[layer]["received"].double() - want).abs() - 1e-6 * want.abs())[ok].max().item()
        assert diff < TOL, f"layer {layer} received: {diff}"
    return got, ref


def _enc(ids, mask):
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("kernel,native", [("stats", "1"), ("stats", "0"), ("eager", "1")])
def test_gqa_llama_batch2_left_padding_blocks(kernel, native, monkeypatch):
    monkeypatch.setenv("ATTNLAB_NATIVE", native)  # "0": the stats kernel's torch-only path
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
    from helpers import layers_of, layer_diffs

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
    got, ref = _compare(model, enc, causal=True, block_size=256)  # run_stats' default: 2 blocks
    assert len(got) == 30 and got[0]["entropy"].shape == (9,)


@pytest.mark.parametrize("self_logit", [0.5, -1e4])
def test_stats_kernel_lse_equals_logsumexp(self_logit):
    """lse from the own key's probability, and the fallback when that probability underflows."""
    from types import SimpleNamespace

    from attnlab.kernels.stats import _lse

    torch.manual_seed(0)
    scores = torch.randn(1, 2, 4, 10) * 3  # queries 0..3 of a block starting at q0=6, keys lo=0..9
    call = SimpleNamespace(q_offset=0)
    rows = torch.arange(4)
    scores[:, :, rows, rows + 6] = self_logit  # each query's own key
    probs = torch.softmax(scores, dim=-1)
    got = _lse(call, scores, probs, q0=6, lo=0)
    assert torch.allclose(got, torch.logsumexp(scores, dim=-1), atol=1e-5)


def test_stats_kernel_scratch_buffers_grow_and_are_released():
    """S/P buffers are kept between calls (grown for a longer input) and freed by run_stats."""
    import attnlab
    from attnlab.kernels import stats as fused
    from attnlab.observe.stats import HeadStats

    model = tiny.llama()
    with torch.no_grad():
        for length in (10, 30, 12):  # grow, then reuse the larger buffers for a shorter input
            ids, _ = tiny.token_batch(batch=1, length=length)
            with attnlab.attach(model, kernel="eager"):
                ref = model(input_ids=ids).logits
            with attnlab.attach(model, kernel="stats", observe=[HeadStats()], block_size=8):
                out = model(input_ids=ids).logits
            assert (out - ref).abs().max().item() < 1e-5, length
    assert fused._scratch.pair[0].numel() >= 4 * 8 * 30  # 4 heads x 8 queries x 30 keys: kept from length 30
    run_stats(model, _enc(*tiny.token_batch(batch=1, length=9)), block_size=4)
    assert fused._scratch.pair is None


def test_head_stats_refuses_incomplete_or_out_of_order_blocks():
    from attnlab.core.call import AttnCall, Site
    from attnlab.observe.stats import HeadStats

    torch.manual_seed(0)
    q, k = torch.randn(1, 2, 6, 4), torch.randn(1, 2, 6, 4)
    call = AttnCall(site=Site("decoder", "self", 0), query=q, key=k, value=k, mask=None, scaling=0.5, causal=True)
    probs = torch.softmax(torch.randn(1, 2, 6, 6), -1)
    stats = HeadStats()
    stats.on_block(call, 0, probs[:, :, :3, :3], 0)
    with pytest.raises(ValueError, match="got queries from 4, expected 3"):
        stats.on_block(call, 4, probs[:, :, 4:, :], 0)
    with pytest.raises(RuntimeError, match="stopped after 3 of 6 queries"):
        layers_of(stats.result())
    stats.on_block(call, 3, probs[:, :, 3:, :], 0)
    assert layers_of(stats.result())[0]["entropy"].shape == (2,)


def test_native_softmax_rows_equal_torch_and_sum_more_exactly():
    from attnlab.native import rowpass_library, softmax_rows

    if rowpass_library() is None:
        pytest.skip("no C compiler: the stats kernel uses its torch path")
    torch.manual_seed(0)
    low = torch.finfo(torch.float32).min
    scores = torch.randn(2, 3, 5, 37) * 8
    scores[..., 30:] = low  # masked keys, as the kernel writes them
    scores[1, 2, 4, 3] = 95.0  # one key dominating: the others underflow to exactly 0
    scores[0, 0, 0, :] = low  # a row that sees nothing: uniform, as torch's softmax gives
    probs = torch.empty_like(scores)
    lse, dot, key_mean, col = softmax_rows(scores, probs)
    ref = torch.softmax(scores, -1)
    assert torch.allclose(probs, ref, rtol=1e-6, atol=1e-7)
    assert bool((probs[1:, ..., 30:] == 0).all()) and float(probs[1, 2, 4, 3]) == 1.0
    assert torch.allclose(lse.flatten()[1:], torch.logsumexp(scores, -1).flatten()[1:], atol=1e-5)
    assert torch.allclose(dot.flatten()[1:], (ref * scores).sum(-1).flatten()[1:], rtol=1e-5, atol=1e-4)
    assert torch.allclose(key_mean, ref @ torch.arange(37.0), atol=1e-4)
    assert col.dtype == torch.float64 and torch.allclose(col, ref.double().sum(2), atol=1e-6)
    # a causal block with a sink, 512 queries: column sums closer to the fp64 softmax than torch's fp32 one
    s = torch.randn(1, 2, 512, 512) * 3
    s[..., 0] += 12
    s.masked_fill_(torch.ones(512, 512).triu(1).bool(), low)
    p = torch.empty_like(s)
    col = softmax_rows(s, p)[3]
    truth = torch.softmax(s.double(), -1).sum(2)
    assert (col - truth).abs().max() < (torch.softmax(s, -1).double().sum(2) - truth).abs().max()
    # causal masking inside the C sweep: rows of a block starting at query 3 of keys [1, 40)
    raw = torch.randn(1, 2, 6, 39) * 4
    own = 3 - 1  # the block's first query sits at key index 2 of the range
    future = torch.arange(39)[None, :] > (torch.arange(6)[:, None] + own)
    want = torch.softmax(raw.masked_fill(future, low), -1)
    got_s, got_p = raw.clone(), torch.empty_like(raw)
    lse = softmax_rows(got_s, got_p, own)[0]
    assert torch.allclose(got_p, want, rtol=1e-6, atol=1e-7) and bool((got_p[..., future] == 0).all())
    assert torch.equal(got_s, raw.masked_fill(future, low))  # observers see masked logits
    assert torch.allclose(lse, torch.logsumexp(raw.masked_fill(future, -torch.inf), -1), atol=1e-5)


def test_native_library_keeps_denormals():
    """Built with -ffast-math but linked without it: loading it must not switch the process
    (torch included) to flush-to-zero arithmetic, as gcc's crtfastmath.o would."""
    from attnlab.native import rowpass_library

    if rowpass_library() is None:
        pytest.skip("no C compiler")
    tiny_value = torch.tensor(1e-40, dtype=torch.float32)  # a denormal
    assert float(tiny_value * 1.5) > 0
