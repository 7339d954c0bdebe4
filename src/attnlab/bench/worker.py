"""One benchmark task in a fresh process, so its peak RSS is its own.

    python -m attnlab.bench.worker TASK.json RESULT.json

A task is {"kind": "cell" | "needles", ...} (see `run_cell` / `run_needles`). The result
is written atomically; a failure writes {"error": "..."} and exits 1.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import traceback

# Parameters under which a sparse kernel computes every visible pair (the parity check);
# exact kernels are checked with their own parameters.
EXACT_KERNELS = ("eager", "sdpa", "chunked")
PARITY_TOL = 2e-3  # max |logit difference| against sdpa, fp32


_LOADED: dict = {}  # model name -> (model, tokenizer); reused when tasks run in one process


def _load(task: dict):
    import torch

    from ..models import load

    torch.manual_seed(0)
    if task.get("threads"):
        torch.set_num_threads(task["threads"])
    if task["model"] not in _LOADED:
        _LOADED.clear()
        _LOADED[task["model"]] = load(task["model"])
    return _LOADED[task["model"]]


def _parity(model, ids, task: dict) -> dict:
    """Logits of the kernel (full-budget parameters) vs sdpa on the first parity_tokens tokens."""
    from ..core.session import attach
    from . import measure

    n = min(task["parity_tokens"], ids.shape[1])
    params = task.get("parity_params")
    if n <= 1 or params is None:
        return {"tokens": n, "params": params, "max_abs_logit_diff": None, "ok": None}
    prefix = ids[:, :n]  # [1, n]
    outs = []
    for kernel, kp in ((task["dense"], {}), (task["kernel"], params)):
        with attach(model, kernel, **kp):
            hidden, _, _ = measure.prefill(model, prefix)
        outs.append(measure.logprobs(model, hidden[0]))  # [n, V]
    diff = float((outs[0] - outs[1]).abs().max())
    return {"tokens": n, "params": params, "max_abs_logit_diff": diff, "ok": diff <= PARITY_TOL}


def run_cell(task: dict) -> dict:
    """Time `repeats` prefills of ids[:length] with one kernel; then ppl, KL, decode speed.

    Kernels whose parameters let outputs depend on later tokens (`kernels.leaky`: the
    papers' block-pooled selections) are timed but not scored: ppl and kl are None.
    """
    import torch

    from ..core.session import attach
    from ..kernels import leaky
    from . import measure

    model, _ = _load(task)
    ids = torch.load(task["ids"])[:, :task["length"]]  # [1, N]
    parity = _parity(model, ids, task)
    if parity["ok"] is False and task["kernel"] in EXACT_KERNELS:
        return {"error": f"parity check failed: {task['label']} differs from {task['dense']} by "
                         f"{parity['max_abs_logit_diff']:.2e} on {parity['tokens']} tokens", "parity": parity}
    import gc

    gc.collect()
    rss_loaded = measure.rss_mb()
    measure.reset_peak_rss()  # the peak below is the prefills', not the model loading's
    timer = measure.AttentionTimer()
    times, attn = [], []
    with attach(model, task["kernel"], observe=[timer], **task["params"]) as session:
        for _ in range(task["repeats"]):
            timer.reset()
            session.densities.clear()
            hidden, cache, seconds = measure.prefill(model, ids)
            times.append(seconds)
            attn.append(timer.seconds.get("prefill", 0.0))
        peak = measure.peak_rss_mb()
        dens = [d for _, phase, d in session.densities if phase == "prefill"]
        result = {
            "prefill_s": statistics.median(times), "prefill_all_s": times,
            "attention_s": statistics.median(attn), "peak_rss_mb": peak,
            "rss_loaded_mb": rss_loaded, "prefill_rss_mb": peak - rss_loaded,
            "density": sum(dens) / len(dens) if dens else 1.0, "parity": parity,
        }
        result["leaky"] = leaky(task["kernel"], task["params"])
        if result["leaky"]:  # its prefill saw later tokens: perplexity / KL there would be a lie
            result.update(ppl=None, ppl_tokens=0, kl=None, kl_positions=0)
        else:
            result.update(_quality(model, hidden, ids, task))
        result["decode_tok_s"] = measure.decode_speed(model, hidden, cache, task["decode_steps"])
    return result


def _quality(model, hidden, ids, task: dict) -> dict:
    """Perplexity over the scored tokens, and KL to the dense reference (written if dense)."""
    import math

    import torch

    from . import measure

    first = task["ppl_first"]
    nll, count = measure.nll_sum(model, hidden, ids, first)
    positions = measure.kl_positions(ids.shape[1], first, task["kl_positions"])
    lp = measure.logprobs(model, hidden[0, positions])  # [P, V]
    out = {"ppl": math.exp(nll / count), "ppl_tokens": count, "kl_positions": len(positions)}
    if task.get("write_ref"):
        torch.save(lp, task["ref"])
        out["kl"] = 0.0
    else:
        out["kl"] = measure.mean_kl(torch.load(task["ref"]), lp)
    return out


def run_needles(task: dict) -> dict:
    """Greedy completions of each needle prompt under the kernel (or, for a kv_needles task,
    under attach(kv=spec) after an sdpa prefill); exact-match per case."""
    from ..core.session import attach
    from . import measure
    from .needles import NeedleCase, is_correct

    model, tokenizer = _load(task)
    results = []
    setting = {"kernel": "sdpa", "kv": task["kv"]} if "kv" in task else {"kernel": task["kernel"], **task["params"]}
    with attach(model, **setting):
        for raw in task["cases"]:
            case = NeedleCase(**{k: v for k, v in raw.items() if k != "length"})
            text = measure.generate_answer(model, tokenizer, case.prompt, task["max_new_tokens"])
            results.append({"length": raw["length"], "depth": case.depth, "answer": case.answer,
                            "generated": text.strip(), "correct": is_correct(case, text)})
    return {"needles": results}


def run_kv(task: dict) -> dict:
    """Prefill ids[:length] and decode `new_tokens` greedily with model.generate() under
    attach(kv=spec): cache bytes after compression, prefill + compression seconds, decode
    tokens/s, the decode phase's own peak RSS (reset when the first decode step starts), tokens."""
    import gc
    import time

    import torch

    from ..core.session import attach
    from . import measure

    model, tokenizer = _load(task)
    ids = torch.load(task["ids"])[:, :task["length"]]  # [1, N]
    stamps = []

    class Clock:  # one stamp per forward (the first self-attention call of layer 0)
        def on_call(self, call):
            if call.layer == 0 and call.role == "self":
                stamps.append(time.perf_counter())
                if len(stamps) == 2:
                    measure.reset_peak_rss()

    gc.collect()
    rss_loaded = measure.rss_mb()
    n = task["new_tokens"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode(), attach(model, kernel="sdpa", kv=task["kv"], observe=[Clock()]) as session:
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             min_new_tokens=n, do_sample=False, pad_token_id=pad)
        held = session.kv_bytes
    layers = held["layers"].values()
    return {"tokens": out[0, ids.shape[1]:].tolist(), "kv_bytes": held["total"],
            "kv_bytes_other_layers": held["left_alone"], "skipped_layers": len(held["skipped"]),
            "tokens_held_mean": (sum(sum(map(sum, l["tokens"])) for l in layers) /
                                 max(1, sum(sum(map(len, l["tokens"])) for l in layers))),
            "prefill_s": stamps[1] - stamps[0], "decode_tok_s": (len(stamps) - 2) / (stamps[-1] - stamps[1]),
            "peak_rss_decode_mb": measure.peak_rss_mb(), "rss_loaded_mb": rss_loaded}


RUNNERS = {"cell": run_cell, "needles": run_needles, "kv": run_kv, "kv_needles": run_needles}


def run_task(task: dict) -> dict:
    """Run a task dict here; failures come back as {"error": ...} like from a subprocess."""
    try:
        return RUNNERS[task["kind"]](task)
    except Exception as exc:  # reported to the parent, which shows it as a clean error
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    task_path, result_path = argv
    with open(task_path) as fh:
        task = json.load(fh)
    result = run_task(task)
    code = 1 if "error" in result else 0
    tmp = f"{result_path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, result_path)
    return code


if __name__ == "__main__":
    sys.exit(main())
