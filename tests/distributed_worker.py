"""One rank of the distributed tests: `python distributed_worker.py OUT CHECKS...` under a
torchrun-like environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), started by
tests/test_distributed.py. Every rank runs the named checks in order, each against a
single-process reference it computes itself, and writes what it measured (max |diff|,
tokens, error messages) to OUT/rank<r>.json; the test asserts on those numbers.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ARCH_NAMES = ("llama", "gemma3", "qwen2", "bert")
LAYOUTS = ("ring", "striped", "zigzag")


def _maxdiff(a, b, rows=None) -> float:
    """max |a - b| over the batch-row / position entries where rows [B, T] is True."""
    d = (a.detach().float() - b.detach().float()).abs()
    if rows is not None:
        d = d[rows]
    return float(d.max()) if d.numel() else 0.0


# ------------------------------------------------------------------ kernel level

def _reference_mask(valid, causal, window):
    """bool [B, 1, T, T] built directly: key padding, causal rule, sliding window."""
    t = valid.shape[1]
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    rule = torch.ones(t, t, dtype=torch.bool)
    if causal:
        rule &= i >= j
    if window is not None:
        rule &= (i - j).abs() < window
    return valid[:, None, None, :] & rule[None, None]


def kernel_case(rank, world, layout, causal, window, t=24, dtype=torch.float32):
    """Ring kernel vs eager on a direct call: outputs and q/k/v gradients of this rank's rows.

    dtype: of q, k, v (bf16: the reference is fp32 eager on the same bf16 values)."""
    from attnlab.core.call import AttnCall, Site
    from attnlab.core.hooks import Hooks
    from attnlab.distributed.layout import shard_index
    from attnlab.distributed.ring import RingContext, ring_kernel, striped_kernel
    from attnlab.kernels import eager

    g = torch.Generator().manual_seed(11)
    b, h, h_kv, d = 2, 4, 2, 8
    q, k, v = (torch.randn(b, n, t, d, generator=g).to(dtype).float() for n in (h, h_kv, h_kv))
    valid = torch.ones(b, t, dtype=torch.bool)
    valid[1, :3] = False if causal else valid[1, :3]
    valid[1, -3:] = valid[1, -3:] if causal else False
    upstream = torch.randn(b, t, h, d, generator=g) * valid[:, :, None, None]  # no gradient on padding rows
    site = Site("decoder", "self", 0)
    qr, kr, vr = (x.clone().requires_grad_() for x in (q, k, v))
    ref_call = AttnCall(site, qr, kr, vr, _reference_mask(valid, causal, window), d ** -0.5, causal)
    ref = eager.forward(ref_call, Hooks()).output  # [B, T, H, D]
    (ref * upstream).sum().backward()
    index = shard_index(t, layout, world)
    local = index[rank]
    ql, kl, vl = (x[:, :, local].to(dtype).requires_grad_() for x in (q, k, v))
    ctx = RingContext(rank, world, layout, index, valid)
    call = AttnCall(site, ql, kl, vl, None, d ** -0.5, causal, sliding_window=window)
    kernel = ring_kernel if layout == "ring" else striped_kernel
    out = kernel(call, Hooks(), context=ctx, block_size=4, key_block=4).output  # [B, n, H, D]
    (out.float() * upstream[:, local]).sum().backward()
    real = valid[:, local]
    return {"out": _maxdiff(out, ref[:, local], real), "dq": _maxdiff(ql.grad, qr.grad[:, :, local]),
            "dk": _maxdiff(kl.grad, kr.grad[:, :, local]), "dv": _maxdiff(vl.grad, vr.grad[:, :, local]),
            "bytes": ctx.bytes_sent, "pairs": ctx.tally.get("pairs", 0)}


def check_kernels(rank, world):
    res = {}
    for layout in LAYOUTS:
        for causal, window in ((True, None), (True, 5), (False, None), (False, 5)):
            res[f"{layout}/causal={causal}/window={window}"] = kernel_case(rank, world, layout, causal, window)
    res["bf16"] = kernel_case(rank, world, "striped", True, None, dtype=torch.bfloat16)
    return res


# ------------------------------------------------------------------ model level

def _reference(model, enc, weights):
    """Single-process eager: hidden states per layer, outputs and parameter gradients of
    the loss sum(output * weights) over real positions."""
    import attnlab

    model.zero_grad()
    with attnlab.attach(model, kernel="eager"):
        out = model(**enc, output_hidden_states=True)
    rows = out.logits if hasattr(out, "logits") else out.last_hidden_state
    (rows * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return [h.detach() for h in out.hidden_states], rows.detach(), grads


def model_case(rank, world, arch_name, layout):
    """Per-layer hidden states, outputs and gradients of the sharded model vs single-process eager."""
    import torch.distributed as dist

    import attnlab.distributed as ad
    from archs import ARCHS

    arch = ARCHS[arch_name]
    model = arch.build()
    enc = arch.inputs()  # batch 2, row 1 padded
    real = enc["attention_mask"].bool()
    probe = model(**enc)
    rows0 = probe.logits if hasattr(probe, "logits") else probe.last_hidden_state
    weights = torch.randn(rows0.shape, generator=torch.Generator().manual_seed(5)) * real[..., None]
    ref_h, ref_rows, ref_grads = _reference(model, enc, weights)
    model.zero_grad()
    with ad.session(model, enc["input_ids"], layout, attention_mask=enc["attention_mask"], timeout=60) as shard:
        out = model(**shard.inputs, output_hidden_states=True)
        rows = out.logits if hasattr(out, "logits") else out.last_hidden_state
        pos = shard.positions
        keep = pos < enc["input_ids"].shape[1]  # drop the layout's right padding
        w = torch.zeros(rows.shape)
        w[:, keep] = weights[:, pos[keep]]
        (rows * w).sum().backward()
    r = real[:, pos[keep]]
    res = {"layers": max(_maxdiff(a[:, keep], b[:, pos[keep]], r) for a, b in zip(out.hidden_states, ref_h)),
           "rows": _maxdiff(rows[:, keep], ref_rows[:, pos[keep]], r)}
    worst = 0.0
    for name, p in model.named_parameters():
        grad = p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        dist.all_reduce(grad)  # every rank's gradient of its share of the loss
        if name in ref_grads:
            worst = max(worst, _maxdiff(grad, ref_grads[name]) / max(1.0, float(ref_grads[name].abs().max())))
    res["grads_rel"] = worst
    full = ad.forward(model, enc["input_ids"], layout, attention_mask=enc["attention_mask"], timeout=60)
    res["forward"] = _maxdiff(full, ref_rows, real) if rank == 0 else None
    res["forward_is_none_elsewhere"] = (full is None) == (rank != 0)
    return res


def check_models(rank, world, layouts=LAYOUTS):
    return {f"{a}/{layout}": model_case(rank, world, a, layout) for a in ARCH_NAMES for layout in layouts}


def check_generate(rank, world, layouts=("ring", "striped"), new=6):
    """Greedy tokens of the sharded cache vs transformers' generate; the prefill cache is local."""
    import attnlab.distributed as ad
    from archs import ARCHS

    res = {}
    for name in ("llama", "gemma3"):
        arch = ARCHS[name]
        model = arch.build()
        enc = arch.inputs()
        ref = model.generate(**enc, max_new_tokens=new, do_sample=False)
        with ad.session(model, enc["input_ids"], "striped", attention_mask=enc["attention_mask"]) as shard:
            cache = model(**shard.inputs, use_cache=True).past_key_values
        res[f"{name}/cache"] = {"local": shard.positions.numel(), "full": enc["input_ids"].shape[1],
                                "cached": [layer.keys.shape[2] for layer in cache.layers]}
        for layout in layouts:
            got = ad.generate(model, enc["input_ids"], max_new_tokens=new, layout=layout,
                              attention_mask=enc["attention_mask"], timeout=60)
            res[f"{name}/{layout}"] = {"ref": ref.tolist(), "got": got.tolist()}
    return res


# ------------------------------------------------------------------ statistics

def _stats_diff(ref: dict, got: dict) -> dict:
    """max |diff| per statistic over every site of two HeadStats.result() dicts."""
    assert set(ref) == set(got), (sorted(ref), sorted(got))
    worst: dict = {}
    for site in ref:
        for stat, value in ref[site].items():
            worst[stat] = max(worst.get(stat, 0.0), _maxdiff(value, got[site][stat]))
    return worst


def check_stats(rank, world, layouts=("striped", "ring")):
    """Sharded HeadStats sums vs the single-process observer; head_stats' DataFrame vs attnlab.head_stats."""
    from transformers import AutoTokenizer

    import attnlab
    import tiny
    from archs import ARCHS
    from attnlab.distributed.stats import head_stats, run_stats
    from attnlab.models import resolve
    from attnlab.observe.heads import run_stats as single_stats

    res = {}
    for name in ("llama", "gemma3", "bert"):
        model, enc = ARCHS[name].build(), ARCHS[name].inputs()
        ref = single_stats(model, enc, local_window=4).result()
        for layout in layouts:
            got = run_stats(model, enc, layout, block_size=4, key_block=8, local_window=4, timeout=60).result()
            res[f"{name}/{layout}"] = _stats_diff(ref, got)
    tok = AutoTokenizer.from_pretrained(resolve("smollm2-135m"))
    model = tiny.llama(vocab_size=len(tok), max_position_embeddings=512)
    text = ["To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
            "the slings and arrows of outrageous fortune", "Or to take arms against a sea of troubles"]
    ref_df = attnlab.head_stats(model, tok, text, min_support=2)
    df = head_stats(model, tok, text, "striped", block_size=8, key_block=8, timeout=60, min_support=2)
    if rank == 0:
        from attnlab.observe.stats import SCALARS

        res["frame"] = {"scalars": float((df[list(SCALARS)] - ref_df[list(SCALARS)]).abs().max().max()),
                        "rows": [len(df), len(ref_df)],
                        "top_same": df["top_received"].tolist() == ref_df["top_received"].tolist(),
                        "sinks_same": df.attrs["sinks"] == ref_df.attrs["sinks"]}
    else:
        res["frame"] = {"none": df is None}
    return res


# ------------------------------------------------------------------ errors

def _error_of(fn) -> str | None:
    try:
        fn()
    except Exception as exc:  # the test asserts on the type name and message
        return f"{type(exc).__name__}: {exc}"
    return None


def check_errors(rank, world):
    import attnlab.distributed as ad
    from archs import ARCHS

    model = ARCHS["llama"].build()
    ids = torch.randint(3, 100, (1, 4 * world + 1), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(ids).logits
    rows = ad.forward(model, ids, "zigzag", positions=[0, 4, 4 * world], timeout=30)  # padded to a multiple
    full = ad.forward(model, ids, "striped", timeout=30)
    res = {"padded": None if rank else [_maxdiff(rows, ref[:, [0, 4, 4 * world]]), _maxdiff(full, ref)],
           "no_pad": _error_of(lambda: ad.forward(model, ids, "striped", pad=False, timeout=30)),
           "bad_layout": _error_of(lambda: ad.forward(model, ids, "spiral", timeout=30))}
    other = ARCHS["llama"].build()
    if rank == 1:
        with torch.no_grad():
            other.lm_head.weight[0, 0] += 1e-3
    res["model_mismatch"] = _error_of(lambda: ad.forward(other, ids, "striped", timeout=30))
    ids2 = ids.clone()
    ids2[0, 0] += rank
    res["input_mismatch"] = _error_of(lambda: ad.forward(model, ids2, "striped", timeout=30))
    return res


def check_dead_rank(rank, world):
    """The last rank exits; the others must fail with a clear error within the timeout."""
    import time

    import attnlab.distributed as ad
    from archs import ARCHS

    model = ARCHS["llama"].build()
    ids = torch.randint(3, 100, (1, 4 * world), generator=torch.Generator().manual_seed(2))
    ad.forward(model, ids, "striped", timeout=10)  # the model hash is agreed: the next run reaches the ring
    if rank == world - 1:
        os._exit(0)
    t0 = time.perf_counter()
    err = _error_of(lambda: ad.forward(model, ids, "striped", timeout=10))
    return {"error": err, "seconds": time.perf_counter() - t0}


CHECKS = {"kernels": check_kernels, "models": check_models, "generate": check_generate, "stats": check_stats,
          "errors": check_errors, "dead_rank": check_dead_rank}


def main(out_dir: str, names: list[str]) -> None:
    from attnlab.distributed.comm import ensure_group

    torch.set_num_threads(1)
    rank, world = ensure_group(timeout=60)
    results = {}
    path = os.path.join(out_dir, f"rank{rank}.json")
    for spec in names:
        name, _, args = spec.partition(":")
        try:
            results[name] = CHECKS[name](rank, world, *([tuple(args.split(","))] if args else []))
        except Exception:
            results[name] = {"crashed": traceback.format_exc()}
        with open(path, "w") as f:  # written after every check: a dead rank leaves what it had
            json.dump(results, f)
    import torch.distributed as dist

    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
