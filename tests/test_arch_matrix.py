"""The architecture matrix: every kernel and feature on each tiny architecture of `archs.ARCHS`.

For every architecture (fp32, seeded, batch 2 with padding where the model takes a mask):
  kernels sdpa / eager / chunked / stats   reproduce the STOCK EAGER model at every hidden
                                           state of every stack and the final output
                                           (max abs on real positions: 1e-5 sdpa, 1e-4 others)
  sparse kernels at a full budget          the same within 1e-4, or RefusedCall (cross-attention,
                                           position biases, sink logits) with a clear message
  generate                                 greedy tokens with a KV cache = stock eager tokens
  head stats / cross-attention stats       HeadStats (kernels stats and eager) = the independent
                                           reference from stock output_attentions maps, 1e-4
Models outside AttentionInterface (archs.UNROUTABLE) are tested in test_core_call.py and
listed here as unsupported.

Each test records its outcome ("exact", "refused", "n/a"; "FAIL" until it passes). When every
cell of the matrix has run, the module writes benchmarks/results/arch_matrix.json (outcomes
only, sorted keys: the same bytes on every passing run); `benchmarks/arch_matrix.py` turns it
into the docs' table (benchmarks/docs_tables.py).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import archs
import attnlab
from attnlab.core.call import RefusedCall, Site
from attnlab.observe.reference import cross_layer_stats, layer_stats
from attnlab.observe.stats import SCALARS, HeadStats

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "arch_matrix.json"
DENSE = ("sdpa", "eager", "chunked", "stats")
TOL = {"sdpa": 1e-5, "eager": 1e-4, "chunked": 1e-4, "stats": 1e-4}
SPARSE_TOL = 1e-4
STATS_TOL = 1e-4
LOCAL_WINDOW = 3  # local_mass band, shorter than the inputs so it measures something
# Full budgets (nothing dropped), on blocks of 4 so the block machinery really runs.
SPARSE = {
    "streaming": dict(sinks=4, window=4096, block_size=4),
    "block_topk": dict(topk=4096, block_size=4),
    "flexprefill": dict(gamma=1.0, block_size=4),
    "window": dict(window=4096, block_size=4),
}
# What each sparse kernel must refuse, and the words its message must carry.
REFUSES = {"t5": "position biases", "gpt_oss": "attention-sink logits", "bart": "cross-attention",
           "whisper": "cross-attention"}
GENERATE = dict(max_new_tokens=4, do_sample=False, pad_token_id=archs.PAD_ID)
NO_POSITIONS = ("prev_token", "self_mass", "mean_distance", "local_mass")  # NaN at cross sites

COLUMNS = (list(DENSE) + list(SPARSE) + [f"generate/{k}" for k in DENSE]
           + [f"{f}/{k}" for f in ("head_stats", "cross_stats") for k in ("stats", "eager")])
UNSUPPORTED = ("not routable through AttentionInterface: clear error "
               "(tests/test_core_call.py::test_models_outside_attention_interface_get_a_clear_error)")


# ----------------------------------------------------------------------------- the stock models

class Zoo:
    """Each architecture built once, with its inputs and its stock eager outputs."""

    def __init__(self):
        self._stock, self._tokens = {}, {}

    def stock(self, name: str):
        """(model, inputs, stock eager output with hidden states and attention maps)."""
        if name not in self._stock:
            arch = archs.ARCHS[name]
            model, inputs = arch.build(), arch.inputs()
            with stock_eager(model), torch.no_grad():
                ref = model(**inputs, output_hidden_states=True, output_attentions=True)
            self._stock[name] = model, inputs, ref
        return self._stock[name]

    def tokens(self, name: str) -> torch.Tensor:
        """The stock eager model's greedy tokens with a KV cache."""
        if name not in self._tokens:
            model, inputs, _ = self.stock(name)
            with stock_eager(model), torch.no_grad():
                self._tokens[name] = model.generate(**prompt(inputs), **GENERATE)
        return self._tokens[name]


@contextmanager
def stock_eager(model):
    """The model on transformers' own eager attention inside the block, then back on its own."""
    own = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(own)
    assert model.config._attn_implementation == own


def prompt(inputs: dict) -> dict:
    """generate()'s inputs: without the teacher-forced decoder side."""
    return {k: v for k, v in inputs.items() if not k.startswith("decoder_")}


def real_masks(inputs: dict) -> dict:
    """{stack: [B, T] mask of real tokens}; a stack not listed (vision, no-mask models) is all real."""
    mask = inputs.get("attention_mask")
    if "decoder_input_ids" in inputs:
        return {"encoder": mask, "decoder": inputs.get("decoder_attention_mask")}
    return {"decoder": mask, "encoder": mask, "text": mask}  # one stack (CLIP: the text tower)


def states(out, inputs: dict) -> dict:
    """{name: (tensor, keep [B, T] or None)}: every hidden state of every stack and the final outputs."""
    real, found = real_masks(inputs), {}

    def add(name, tensors, stack):
        for i, t in enumerate(tensors):
            found[f"{name}[{i}]"] = (t, real.get(stack))

    if getattr(out, "text_model_output", None) is not None:  # CLIP: two towers
        for stack in ("text", "vision"):
            tower = getattr(out, f"{stack}_model_output")
            add(f"{stack}.hidden_states", tower.hidden_states, stack)
            add(f"{stack}.last_hidden_state", [tower.last_hidden_state], stack)
        add("logits_per_image", [out.logits_per_image], None)  # [images, texts]: no positions
        return found
    if getattr(out, "encoder_hidden_states", None) is not None:  # encoder-decoder
        add("encoder_hidden_states", out.encoder_hidden_states, "encoder")
        add("encoder_last_hidden_state", [out.encoder_last_hidden_state], "encoder")
        add("decoder_hidden_states", out.decoder_hidden_states, "decoder")
    else:
        add("hidden_states", out.hidden_states, "decoder")
    final = out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state
    add("output", [final], "decoder")
    return found


def state_diffs(ref, out, inputs: dict) -> dict:
    """{state name: max |ref - out| over real positions}."""
    want, got = states(ref, inputs), states(out, inputs)
    assert sorted(want) == sorted(got)
    diffs = {}
    for name, (a, keep) in want.items():
        b = got[name][0]
        assert a.shape == b.shape, name
        d = (a - b).abs()
        diffs[name] = float((d[keep.bool()] if keep is not None else d).max())
    return diffs


def run(model, inputs: dict, kernel: str, **params):
    """One forward under attach(kernel): (output with hidden states, session)."""
    own = model.config._attn_implementation
    with attnlab.attach(model, kernel=kernel, **params) as session, torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    assert model.config._attn_implementation == own  # restored on exit
    return out, session


# ----------------------------------------------------------------------------- the results

class Matrix:
    """{(arch, column): outcome}; a cell is "FAIL" from its test's start until it passes."""

    def __init__(self):
        self.cells: dict = {}

    def start(self, arch: str, *columns: str) -> None:
        for column in columns:
            self.cells[(arch, column)] = "FAIL"

    def done(self, arch: str, column: str, outcome: str = "exact") -> None:
        self.cells[(arch, column)] = outcome

    def complete(self) -> bool:
        return set(self.cells) == {(a, c) for a in archs.ARCHS for c in COLUMNS}

    def to_json(self) -> dict:
        import transformers

        rows = {name: {"kind": arch.kind, "notes": arch.notes,
                       "cells": {c: self.cells[(name, c)] for c in COLUMNS}} for name, arch in archs.ARCHS.items()}
        return {
            "about": "written by tests/test_arch_matrix.py; docs table by benchmarks/docs_tables.py",
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "tolerances": {"sdpa": TOL["sdpa"], "eager_chunked_stats": TOL["eager"], "sparse": SPARSE_TOL,
                           "head_stats": STATS_TOL},
            "archs": rows,
            "refused_for": dict(sorted(REFUSES.items())),  # what the sparse kernels refuse
            "unsupported": {name: {"kind": arch.kind, "notes": arch.notes, "outcome": UNSUPPORTED}
                            for name, arch in archs.UNROUTABLE.items()},
        }


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models are tiny: one intra-op thread is fastest, and immune to a busy second core
    (two threads spin-waiting on a loaded 2-core machine made this module 10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def zoo():
    return Zoo()


@pytest.fixture(scope="module")
def matrix():
    """The module's results; written to RESULTS when every cell ran (a -k selection writes nothing)."""
    found = Matrix()
    yield found
    if found.complete():
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(found.to_json(), indent=1, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- 1. dense kernels

@pytest.mark.parametrize("kernel", DENSE)
@pytest.mark.parametrize("name", list(archs.ARCHS))
def test_kernel_reproduces_stock_eager(zoo, matrix, name, kernel):
    matrix.start(name, kernel)
    model, inputs, ref = zoo.stock(name)
    out, session = run(model, inputs, kernel)
    assert session.calls > 0
    diffs = state_diffs(ref, out, inputs)
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < TOL[kernel], f"{name} {kernel}: {worst} differs by {diffs[worst]:.2e}"
    matrix.done(name, kernel)


# ----------------------------------------------------------------------------- 2. generate

@pytest.mark.parametrize("kernel", DENSE)
@pytest.mark.parametrize("name", list(archs.ARCHS))
def test_generate_gives_the_stock_tokens(zoo, matrix, name, kernel):
    column = f"generate/{kernel}"
    if not archs.ARCHS[name].generates:
        matrix.done(name, column, "n/a")
        pytest.skip(f"{name} ({archs.ARCHS[name].kind}) does not generate")
    matrix.start(name, column)
    model, inputs, _ = zoo.stock(name)
    want = zoo.tokens(name)
    with attnlab.attach(model, kernel=kernel) as session, torch.no_grad():
        got = model.generate(**prompt(inputs), **GENERATE)
    assert session.calls_by_phase.get("decode", 0) > 0  # the new tokens ran on the KV cache
    assert torch.equal(got, want), f"{name} {kernel}: {got.tolist()} != {want.tolist()}"
    matrix.done(name, column)


# ----------------------------------------------------------------------------- 3. head statistics

def stock_maps(out, sites) -> dict:
    """{(stack, role): per-layer stock eager maps [B, H, Q, K]} for the stacks the sites name."""
    if getattr(out, "encoder_attentions", None) is not None:
        return {("encoder", "self"): out.encoder_attentions, ("decoder", "self"): out.decoder_attentions,
                ("decoder", "cross"): out.cross_attentions}
    if getattr(out, "text_model_output", None) is not None:
        return {("text", "self"): out.text_model_output.attentions,
                ("vision", "self"): out.vision_model_output.attentions}
    stacks = {site.stack for site in sites}
    assert len(stacks) == 1, stacks
    return {(stacks.pop(), "self"): out.attentions}


def window(config, layer: int, causal: bool) -> int | None:
    """The layer's sliding window in `reference.visibility` terms, from the config's layer types.

    Causal layers see keys i - w < j <= i (transformers' sliding_window_overlay, w =
    config.sliding_window). Bidirectional ones (ModernBERT local layers) see |i - j| <=
    config.sliding_window (sliding_window_bidirectional_overlay), i.e. |i - j| < w + 1.
    """
    types = getattr(config, "layer_types", None)
    w = getattr(config, "sliding_window", None)
    if w is None or (types is not None and types[layer] != "sliding_attention"):
        return None
    return w if causal else w + 1


def reference(site, amap: torch.Tensor, real: dict, config) -> dict:
    """The reference statistics of one site from its stock map [B, H, Q, K]."""
    b, _, q, k = amap.shape
    q_real = real.get(site.stack)
    q_real = torch.ones(b, q, dtype=torch.bool) if q_real is None else q_real.bool()
    if site.role == "cross":
        k_real = real.get("encoder")
        k_real = torch.ones(b, k, dtype=torch.bool) if k_real is None else k_real.bool()
        return cross_layer_stats(amap, q_real, k_real)
    causal = site.stack in ("decoder", "text")  # decoders and CLIP's causal text tower
    return layer_stats(amap, q_real, causal, window(config, site.layer, causal), LOCAL_WINDOW)


def mismatches(site, got: dict, ref: dict) -> list[str]:
    """What differs between HeadStats' and the reference's statistics of one site."""
    bad = []
    for stat in SCALARS:
        g, r = got[stat].double(), ref[stat]
        if site.role == "cross" and stat in NO_POSITIONS:
            if not (torch.isnan(g).all() and torch.isnan(r).all()):
                bad.append(f"{site} {stat}: should be NaN")
            continue
        d = float((g - r).abs().max())
        if not d < STATS_TOL:
            bad.append(f"{site} {stat}: {d:.2e}")
    if not torch.equal(got["support"].double(), ref["support"]):
        bad.append(f"{site} support")
    d = float((got["received"].double() - ref["received"]).abs().max())
    if not d < STATS_TOL:
        bad.append(f"{site} received: {d:.2e}")
    return bad


@pytest.mark.parametrize("kernel", ["stats", "eager"])
@pytest.mark.parametrize("name", list(archs.ARCHS))
def test_head_stats_equal_the_reference(zoo, matrix, name, kernel):
    matrix.start(name, f"head_stats/{kernel}", f"cross_stats/{kernel}")
    model, inputs, ref = zoo.stock(name)
    real = real_masks(inputs)
    observer = HeadStats(real=real, local_window=LOCAL_WINDOW)
    with attnlab.attach(model, kernel=kernel, observe=[observer]), torch.no_grad():
        model(**inputs)
    got = observer.result()
    maps = stock_maps(ref, got)
    assert sorted(got) == sorted(Site(s, r, i) for (s, r), ms in maps.items() for i in range(len(ms)))
    config = model.config.get_text_config()
    bad = {role: [] for role in ("self", "cross")}
    for site, stats in got.items():
        amap = maps[(site.stack, site.role)][site.layer]
        bad[site.role] += mismatches(site, stats, reference(site, amap, real, config))
    if not bad["self"]:
        matrix.done(name, f"head_stats/{kernel}")
    has_cross = any(site.role == "cross" for site in got)
    if not bad["cross"]:
        matrix.done(name, f"cross_stats/{kernel}", "exact" if has_cross else "n/a")
    assert not bad["self"] + bad["cross"], bad


# ----------------------------------------------------------------------------- 4. sparse kernels

@pytest.mark.parametrize("kernel", list(SPARSE))
@pytest.mark.parametrize("name", list(archs.ARCHS))
def test_sparse_kernel_at_full_budget_is_exact_or_refuses(zoo, matrix, name, kernel):
    matrix.start(name, kernel)
    model, inputs, ref = zoo.stock(name)
    if name in REFUSES:
        own = model.config._attn_implementation
        with pytest.raises(RefusedCall) as refused:
            run(model, inputs, kernel, **SPARSE[kernel])
        message = str(refused.value)
        assert f"kernel {kernel!r}" in message and REFUSES[name] in message, message
        assert model.config._attn_implementation == own  # restored after the refusal too
        matrix.done(name, kernel, "refused")
        return
    out, session = run(model, inputs, kernel, **SPARSE[kernel])
    assert session.densities and all(d == 1.0 for _, _, d in session.densities)  # nothing dropped
    diffs = state_diffs(ref, out, inputs)
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < SPARSE_TOL, f"{name} {kernel}: {worst} differs by {diffs[worst]:.2e}"
    matrix.done(name, kernel)
