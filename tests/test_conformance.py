"""Kernel conformance (issue 12, section 3): every kernel in KERNELS, in the four patterns
causal self / non-causal self / causal cross / non-causal cross, on small direct calls and
on a tiny Llama end to end.

  leakage  changing the tokens (query / key / value rows) after position t changes no output
           at positions <= t (causal patterns; sparse kernels with budgets that really drop keys)
  decode   a prefill of n tokens + k single-token steps on the cached keys equals one prefill
           of n + k (batch of 1, and batch of 2 with left padding)
  batch    a left-padded row equals the same sequence run alone, on its real positions, in
           prefill and in decode steps, also when the padding is not a multiple of the block size

A pattern a kernel cannot serve must raise RefusedCall before computing anything. The
leaky paper variants of the content-based sparse kernels (block_topk pool="mean",
flexprefill estimate="last_block") are asserted to leak, so their labels stay honest.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import attnlab
import tiny
from attnlab.core.call import AttnCall, RefusedCall, Site
from attnlab.core.hooks import Hooks
from attnlab.kernels import KERNELS, leaky

TOL = 1e-4
T, N_PREFILL, D = 64, 56, 8  # tokens per sequence, prefill length of the decode tests, head dim
PAD = 8  # left padding of row 1; a multiple of every block size below (MISALIGNED: one that is not)

# budgets that really drop keys on 64 tokens
PARAMS = {
    "chunked": dict(block_size=8, key_block=16),
    "eager": dict(block_size=16),
    "streaming": dict(sinks=2, window=8, block_size=4),
    "block_topk": dict(topk=1, block_size=4),
    "flexprefill": dict(gamma=0.5, block_size=4),
    "window": dict(window=8, block_size=4),
    "linear": dict(chunk=8),
    "hybrid": dict(window=8, chunk=8),
}
LEAKY = {"block_topk": dict(pool="mean"), "flexprefill": dict(estimate="last_block")}
NAMES = sorted(KERNELS)
PATTERNS = ["causal-self", "noncausal-self", "causal-cross", "noncausal-cross"]


class _Blocks:
    """An observer with `on_block`, so `stats` runs its own path instead of deferring to eager."""

    def on_block(self, call, q_start, probs, k_start, scores, rows):
        pass


def _hooks(name: str) -> Hooks:
    return Hooks(observers=(_Blocks(),)) if name == "stats" else Hooks()


def _run(name: str, call: AttnCall, **extra) -> torch.Tensor:
    """The kernel's output [B, Q, H, Dv]."""
    return KERNELS[name].forward(call, _hooks(name), **{**PARAMS.get(name, {}), **extra}).output


def _tokens(b=2, h=4, h_kv=2, t=T, seed=0, k_len=None):
    """Per-token rows: q [B, H, t, D], k / v [B, H_kv, k_len or t, D]."""
    g = torch.Generator().manual_seed(seed)
    k_len = t if k_len is None else k_len
    return (torch.randn(b, h, t, D, generator=g), torch.randn(b, h_kv, k_len, D, generator=g),
            torch.randn(b, h_kv, k_len, D, generator=g))


def _mask(b, q_len, k_len, pad, causal, q_start=None):
    """bool [B, 1, Q, K]: row 1's first `pad` keys are padding; causal rule for queries at q_start..."""
    if not pad:
        return None
    q_start = k_len - q_len if q_start is None else q_start
    mask = torch.ones(b, 1, q_len, k_len, dtype=torch.bool)
    if causal:
        mask &= (torch.arange(q_len)[:, None] + q_start >= torch.arange(k_len)[None, :])
    mask[1, :, :, :pad] = False
    return mask


def _call(pattern: str, q, k, v, pad=0, q_rows=None):
    """The AttnCall of `pattern` on rows q [B, H, Q, D], k / v [B, H_kv, K, D].

    Self: queries are the last Q positions of the K keys (default q_start). Cross: keys are
    encoder states, all visible (padding aside), no positions. q_rows: (first, Q total) of
    these queries within the full decoder sequence, for the cross mask."""
    causal_rule, cross = pattern.startswith("causal"), pattern.endswith("cross")
    b, q_len, k_len = q.shape[0], q.shape[2], k.shape[2]
    if cross:
        return AttnCall(site=Site("decoder", "cross", 0), query=q, key=k, value=v,
                        mask=_mask(b, q_len, k_len, pad, causal=False), scaling=D ** -0.5, causal=False,
                        q_start=0 if q_rows is None else q_rows[0], k_start=None)
    return AttnCall(site=Site("decoder", "self", 0), query=q, key=k, value=v,
                    mask=_mask(b, q_len, k_len, pad, causal=causal_rule), scaling=D ** -0.5, causal=causal_rule)


def _refuses(name: str, pattern: str) -> bool:
    """Whether the kernel refuses the pattern (checked: RefusedCall before any work)."""
    q, k, v = _tokens(k_len=24 if pattern.endswith("cross") else None)
    try:
        _run(name, _call(pattern, q, k, v))
    except RefusedCall:
        return True
    return False


def _skip_refused(name, pattern):
    if _refuses(name, pattern):
        pytest.skip(f"{name} refuses {pattern} (asserted in test_refusals)")


def _diff(a, b) -> float:
    return float((a - b).abs().sum())


# ---------------------------------------------------------------------------- refusals

SPARSE = ("streaming", "block_topk", "flexprefill", "window", "hybrid")  # hybrid: a window needs positions


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("pattern", ["causal-cross", "noncausal-cross"])
def test_refusals(name, pattern):
    """Sparse kernels refuse cross-attention with RefusedCall before touching a tensor;
    the exact kernels serve it."""
    q, k, v = _tokens(k_len=24)
    call = _call(pattern, q, k, v)
    if name not in SPARSE:
        assert torch.isfinite(_run(name, call)).all()
        return

    class Untouchable(torch.Tensor):  # any computation on these raises
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func.__name__ in ("__get__", "shape", "size", "dim", "device", "dtype", "__len__"):
                return super().__torch_function__(func, types, args, kwargs or {})
            raise AssertionError(f"{name} computed {func.__name__} before refusing")

    touched = dataclasses.replace(call, query=q.as_subclass(Untouchable), key=k.as_subclass(Untouchable),
                                  value=v.as_subclass(Untouchable))
    with pytest.raises(RefusedCall, match="cross-attention"):
        _run(name, touched)


# ---------------------------------------------------------------------------- leakage

def _perturb_after(x: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    """x [B, H, T, D] with every row after position t replaced by fresh noise (5x larger)."""
    g = torch.Generator().manual_seed(seed)
    y = x.clone()
    y[:, :, t + 1:] = 5 * torch.randn(y[:, :, t + 1:].shape, generator=g)
    return y


def _leak(name: str, pattern: str, ts=(13, 30, 47), pad=0, **extra) -> float:
    """Largest summed |difference| at positions <= t when the tokens after t change."""
    cross = pattern.endswith("cross")
    q, k, v = _tokens(k_len=24 if cross else None)
    worst = 0.0
    for t in ts:
        q2 = _perturb_after(q, t, 1)
        k2, v2 = (k, v) if cross else (_perturb_after(k, t, 2), _perturb_after(v, t, 3))
        out = _run(name, _call(pattern, q, k, v, pad), **extra)
        out2 = _run(name, _call(pattern, q2, k2, v2, pad), **extra)
        keep = torch.ones(out.shape[:2], dtype=torch.bool)
        if pad:
            keep[1, :pad] = False  # padding queries see nothing real
        keep[:, t + 1:] = False
        worst = max(worst, _diff(out[keep], out2[keep]))
    return worst


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("pattern", ["causal-self", "causal-cross"])
@pytest.mark.parametrize("pad", [0, PAD])
def test_no_causal_leakage(name, pattern, pad):
    _skip_refused(name, pattern)
    assert _leak(name, pattern, pad=pad) <= TOL


@pytest.mark.parametrize("name", sorted(LEAKY))
def test_leaky_options_do_leak(name):
    """The paper variants pool over whole query blocks: honestly labelled as leaking."""
    assert leaky(name, LEAKY[name])
    assert not leaky(name, PARAMS[name])
    assert _leak(name, "causal-self", **LEAKY[name]) > 1e-2


# ---------------------------------------------------------------------------- decode

def _decode(name, pattern, b, pad, n=N_PREFILL):
    """(one pass over all T queries, prefill n + T - n single-query steps), both [B, T, H, Dv]."""
    cross = pattern.endswith("cross")
    q, k, v = _tokens(b=b, k_len=24 if cross else None)
    whole = _run(name, _call(pattern, q, k, v, pad))
    if cross:  # the decoder runs query by query on the same encoder keys
        parts = [_run(name, _call(pattern, q[:, :, :n], k, v, pad, q_rows=(0, T)))]
        parts += [_run(name, _call(pattern, q[:, :, i:i + 1], k, v, pad, q_rows=(i, T))) for i in range(n, T)]
    else:  # self-attention on the cached keys: q_len 1, k_len i + 1, q_start = K - Q
        parts = [_run(name, _call(pattern, q[:, :, :n], k[:, :, :n], v[:, :, :n], pad))]
        parts += [_run(name, _call(pattern, q[:, :, i:i + 1], k[:, :, :i + 1], v[:, :, :i + 1], pad))
                  for i in range(n, T)]
    return whole, torch.cat(parts, dim=1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("pattern", ["causal-self", "causal-cross"])
@pytest.mark.parametrize("b,pad", [(1, 0), (2, PAD)])
def test_incremental_decoding_equals_one_prefill(name, pattern, b, pad):
    _skip_refused(name, pattern)
    whole, steps = _decode(name, pattern, b, pad)
    if pad:
        whole, steps = whole.clone(), steps.clone()
        whole[1, :pad] = steps[1, :pad] = 0
    assert float((whole - steps).abs().max()) <= TOL


# ---------------------------------------------------------------------------- batch independence

def _batch_gap(name: str, pattern: str, pad: int) -> float:
    """Max |difference| between row 1 (left-padded by `pad`) and its real tokens run alone."""
    cross = pattern.endswith("cross")
    q, k, v = _tokens(k_len=24 if cross else None)
    batch = _run(name, _call(pattern, q, k, v, pad))
    if cross:  # the encoder keys of row 1 are padded; its decoder queries are its own
        alone = _run(name, _call(pattern, q[1:], k[1:, :, pad:], v[1:, :, pad:]))
        return float((batch[1] - alone[0]).abs().max())
    alone = _run(name, _call(pattern, q[1:, :, pad:], k[1:, :, pad:], v[1:, :, pad:]))
    return float((batch[1, pad:] - alone[0]).abs().max())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_batch_independence_left_padding(name, pattern):
    _skip_refused(name, pattern)
    assert _batch_gap(name, pattern, PAD) <= TOL


MISALIGNED = 5  # left padding that is not a multiple of the block sizes above (4, 8, 16)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("pattern", ["causal-self", "noncausal-self"])
def test_batch_misaligned_padding(name, pattern):
    """Padding that is not a multiple of the block size: the position-rule kernels count from
    each row's first real token, the content-selecting block kernels start each row's block
    grid at its first real key (`blocks.aligned`), so every kernel stays exact."""
    _skip_refused(name, pattern)
    assert _batch_gap(name, pattern, MISALIGNED) <= TOL


def _decode_alone(name, n=N_PREFILL, pad=MISALIGNED):
    """Row 1 (left-padded by `pad`) run alone on its real tokens: prefill n - pad + single steps, [T - pad, H, Dv]."""
    q, k, v = (x[1:, :, pad:] for x in _tokens())
    parts = [_run(name, _call("causal-self", q[:, :, :n - pad], k[:, :, :n - pad], v[:, :, :n - pad]))]
    parts += [_run(name, _call("causal-self", q[:, :, i:i + 1], k[:, :, :i + 1], v[:, :, :i + 1]))
              for i in range(n - pad, T - pad)]
    return torch.cat(parts, dim=1)[0]


@pytest.mark.parametrize("name", NAMES)
def test_decode_misaligned_padding(name):
    """Prefill + cached single-token steps with padding off the block grid (batch of 2, row 1
    left-padded by 5, blocks of 4): equal to one prefill, and row 1's steps equal the same
    sequence decoded alone; every output (padding rows too) is finite."""
    whole, steps = _decode(name, "causal-self", 2, MISALIGNED)
    assert torch.isfinite(whole).all() and torch.isfinite(steps).all()
    alone = _decode_alone(name)
    assert float((steps[1, MISALIGNED:] - alone).abs().max()) <= TOL
    whole, steps = whole.clone(), steps.clone()
    whole[1, :MISALIGNED] = steps[1, :MISALIGNED] = 0
    assert float((whole - steps).abs().max()) <= TOL


@pytest.mark.parametrize("name", ["block_topk", "flexprefill"])
@pytest.mark.parametrize("pattern", ["causal-self", "noncausal-self"])
def test_no_fully_masked_block_is_selected(name, pattern, monkeypatch):
    """With misaligned left padding (prefill and decode steps), every key block a query
    chooses holds a key the mask shows it (no budget on padding), and the budget really
    drops keys."""
    from attnlab.kernels import blocks as bk

    seen, attend = [], bk.attend

    def spy(call, blocks, size, rule=None, partial=None, per_query=None):
        shown = bk.mask_blocks(call, bk.grid(call, size), per_query=True)  # [B, 1, Q, nk]
        assert per_query is not None and shown is not None
        assert not (per_query & ~shown).any(), "a fully masked key block was selected"
        seen.append(call.q_len)
        return attend(call, blocks, size, rule, partial, per_query)

    monkeypatch.setattr(bk, "attend", spy)
    q, k, v = _tokens()
    out = KERNELS[name].forward(_call(pattern, q, k, v, MISALIGNED), Hooks(), **PARAMS[name])
    assert out.density < 0.9 and torch.isfinite(out.output).all()
    if pattern == "causal-self":
        step = _call(pattern, q[:, :, 40:41], k[:, :, :41], v[:, :, :41], MISALIGNED)
        assert torch.isfinite(KERNELS[name].forward(step, Hooks(), **PARAMS[name]).output).all()
    assert seen and (pattern != "causal-self" or 1 in seen)


# ---------------------------------------------------------------------------- tiny model end to end

@pytest.fixture(scope="module")
def llama():
    return tiny.llama()


def _logits(model, ids, mask, name):
    with torch.no_grad(), attnlab.attach(model, kernel=name, observe=list(_hooks(name).observers),
                                         **PARAMS.get(name, {})):
        return model(input_ids=ids, attention_mask=mask).logits  # [B, T, V]


@pytest.mark.parametrize("name", NAMES)
def test_model_no_leakage_and_decode(llama, name):
    """Tiny Llama, batch of 2, row 1 left-padded: later tokens change no earlier logits, and
    prefill + cached single-token steps give the one-pass logits."""
    ids, mask = tiny.token_batch(batch=2, length=T, pad_left=PAD)
    t = 40
    other = ids.clone()
    other[:, t + 1:] = torch.randint(3, tiny.VOCAB, other[:, t + 1:].shape, generator=torch.Generator().manual_seed(5))
    whole = _logits(llama, ids, mask, name)
    changed = _logits(llama, other, mask, name)
    real = mask.bool()
    real_upto = real.clone()
    real_upto[:, t + 1:] = False
    assert float((whole - changed).abs()[real_upto].max()) <= TOL
    from attnlab.models import cache_kwarg, returned_cache

    n = N_PREFILL
    with torch.no_grad(), attnlab.attach(llama, kernel=name, observe=list(_hooks(name).observers),
                                         **PARAMS.get(name, {})):
        out = llama(input_ids=ids[:, :n], attention_mask=mask[:, :n], use_cache=True)
        steps, cache = [out.logits], returned_cache(out)
        for i in range(n, T):
            out = llama(input_ids=ids[:, i:i + 1], attention_mask=mask[:, :i + 1], use_cache=True,
                        **{cache_kwarg(llama): cache})
            steps.append(out.logits)
            cache = returned_cache(out)
    assert float((whole - torch.cat(steps, dim=1)).abs()[real].max()) <= TOL
