"""What every sparse kernel must do: equal `eager` when its budget covers everything (per
call, per layer, logits, generate), handle GQA / padding / Gemma3 windows / softcap /
decode, report density, fall back to dense only below `min_len`, reject unknown parameters."""

import dataclasses

import pytest
import torch

import attnlab
import tiny
from attnlab.core.hooks import Hooks
from attnlab.kernels import KERNELS, eager, parse_spec
from helpers import layer_diffs
from test_kernels_chunked import CASES, _call

# parameters under which each kernel's budget covers every visible key
FULL = {
    "streaming": dict(sinks=0, window=10**6),
    "block_topk": dict(topk=10**6),
    "flexprefill": dict(gamma=1.0),
    "window": dict(window=10**6),
}
# a budget that really drops keys on the tiny inputs below
SMALL = {
    "streaming": dict(sinks=2, window=6, block_size=4),
    "block_topk": dict(topk=1, local=1, block_size=4),
    "flexprefill": dict(gamma=0.5, block_size=4),
    "window": dict(window=6, stride=2, block_size=4),
}
SPARSE = [k for k in FULL if k in KERNELS]


def _masked_diff(out, ref, pad):
    diff = (out - ref).abs()  # [B, Q, H, Dv]
    diff[1, :pad] = 0  # queries that are padding themselves are meaningless
    return float(diff.max())


@pytest.mark.parametrize("case", sorted(c for c in CASES if c != "bias"))
@pytest.mark.parametrize("kernel", SPARSE)
@pytest.mark.parametrize("block", [4, 64])
def test_full_budget_equals_eager_per_call(kernel, case, block):
    call = _call(**CASES[case])
    ref = eager.forward(call, Hooks()).output
    out = KERNELS[kernel].forward(call, Hooks(), block_size=block, **FULL[kernel])
    assert _masked_diff(out.output, ref, CASES[case].get("pad", 0)) < 1e-5
    assert out.density == pytest.approx(1.0)


@pytest.mark.parametrize("kernel", SPARSE)
def test_small_budget_drops_keys_and_stays_finite(kernel):
    call = _call(q=40, k=40, pad=6)
    out = KERNELS[kernel].forward(call, Hooks(), **SMALL[kernel])
    assert 0.0 < out.density < 1.0
    assert torch.isfinite(out.output).all()


def _model_run(model, ids, mask, kernel=None, **params):
    with torch.no_grad():
        if kernel is None:
            return model(input_ids=ids, attention_mask=mask, output_hidden_states=True), None
        with attnlab.attach(model, kernel=kernel, **params) as session:
            return model(input_ids=ids, attention_mask=mask, output_hidden_states=True), session


@pytest.mark.parametrize("kernel", SPARSE)
@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_full_budget_model_parity_left_padded(kernel, arch):
    model = getattr(tiny, arch)()  # llama: GQA 4/2 heads; gemma3: window 8 on two of three layers
    ids, mask = tiny.token_batch(batch=2, length=30, pad_left=5)
    ref, _ = _model_run(model, ids, mask)
    out, session = _model_run(model, ids, mask, kernel, block_size=4, **FULL[kernel])
    assert max(layer_diffs(ref, out, keep=mask)) < 1e-5
    assert [d for _, _, d in session.densities] == pytest.approx([1.0] * model.config.num_hidden_layers)


@pytest.mark.parametrize("kernel", SPARSE)
def test_generate_after_sparse_prefill(kernel):
    model = tiny.gemma3(window=6)
    ids, mask = tiny.token_batch(batch=2, length=20, pad_left=3)
    kw = dict(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        ref = model.generate(**kw)
        with attnlab.attach(model, kernel=kernel, block_size=4, **FULL[kernel]):
            full = model.generate(**kw)
        with attnlab.attach(model, kernel=kernel, **SMALL[kernel]) as session:
            small = model.generate(**kw)
    assert torch.equal(ref, full)
    assert small.shape == ref.shape
    phases = {phase for _, phase, _ in session.densities}
    assert phases == {"prefill", "decode"}
    assert min(d for _, phase, d in session.densities if phase == "prefill") < 1.0


@pytest.mark.parametrize("kernel", SPARSE)
def test_min_len_is_an_explicit_dense_fallback(kernel):
    call = _call(q=30, k=30, pad=4)
    out = KERNELS[kernel].forward(call, Hooks(), min_len=31, **SMALL[kernel])
    assert out.density == 1.0
    assert _masked_diff(out.output, eager.forward(call, Hooks()).output, 4) < 1e-5
    below = KERNELS[kernel].forward(call, Hooks(), min_len=30, **SMALL[kernel])
    assert below.density < 1.0


@pytest.mark.parametrize("kernel", SPARSE)
def test_unknown_parameters_are_errors(kernel):
    with pytest.raises(ValueError, match="no parameter"):
        parse_spec(f"{kernel}:not_a_param=3")
    with pytest.raises(ValueError, match="no parameter"):
        with attnlab.attach(tiny.llama(), kernel=kernel, not_a_param=3):
            pass
    name, params = parse_spec(f"{kernel}:block_size=16,min_len=100")
    assert (name, params) == (kernel, {"block_size": 16, "min_len": 100})


@pytest.mark.parametrize("kernel", SPARSE)
def test_additive_bias_is_refused(kernel):
    with pytest.raises(ValueError, match="bias"):
        KERNELS[kernel].forward(_call(bias=True), Hooks())


@pytest.mark.parametrize("kernel", SPARSE + ["chunked"])
def test_bf16_full_budget_close_to_fp32_eager(kernel):
    call = _call(q=40, k=40, pad=5)
    low = dataclasses.replace(call, query=call.query.bfloat16(), key=call.key.bfloat16(), value=call.value.bfloat16())
    params = dict(block_size=8, **FULL.get(kernel, {}))
    out = KERNELS[kernel].forward(low, Hooks(), **params)
    assert out.output.dtype == torch.bfloat16
    assert _masked_diff(out.output.float(), eager.forward(call, Hooks()).output, 5) < 3e-2


@pytest.mark.real
def test_real_smollm2_full_budget_and_sparse(smollm2, hamlet, kernel="block_topk"):
    model, tok = smollm2
    tok.padding_side = "left"
    enc = attnlab.encode(model, tok, [hamlet[:700], hamlet[3000:3300]])  # left-padded batch of 2
    with torch.no_grad():
        ref = model(**enc, output_hidden_states=True)
        with attnlab.attach(model, kernel=kernel, block_size=32, **FULL[kernel]):
            full = model(**enc, output_hidden_states=True)
        with attnlab.attach(model, kernel=kernel, **{**SMALL[kernel], "block_size": 16}) as session:
            small = model(**enc)
    assert max(layer_diffs(ref, full, keep=enc["attention_mask"])) < 1e-3
    assert torch.isfinite(small.logits).all()
    assert max(d for _, _, d in session.densities) < 1.0
