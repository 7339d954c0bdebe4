"""Prefill and decode of SmolLM2-135M at long context: softmax + KV cache vs the converted model.

Same process, same prompt (KJV text), one thread: for each context length, the stock
softmax model (sdpa, transformers' DynamicCache) and the converted model (hybrid w=64 and
linear, hedgehog maps, attnlab StateCache) each prefill the context, then greedily decode
`--steps` tokens. Reported: prefill seconds, decode tokens/s (median of per-token times),
cache bytes after the decode (exact tensor bytes), and the peak RSS increase during the
prefill + decode (Linux VmHWM reset before each run).

    python3 benchmarks/convert_decode.py --contexts 2048 8192 --steps 16

`--fresh` runs every (context, variant) in its own new process (MALLOC_MMAP_THRESHOLD_=65536,
so freed tensors leave the RSS) and also records the prefill's and the decode phase's own
peak RSS (VmHWM reset before the prefill and again before the first decode step): in one
process the allocator's reuse makes those increases unreliable.

    python3 benchmarks/convert_decode.py --fresh --contexts 2048 8192 16384 --steps 8 \
        --out benchmarks/results/convert/decode_fresh.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "convert"


def cache_bytes(cache) -> int:
    from attnlab.convert.cache import StateCache

    if isinstance(cache, StateCache):
        return cache.memory()
    return sum(layer.keys.numel() * layer.keys.element_size() * 2 for layer in cache.layers if layer.is_initialized)


def run_one(model, ids, steps, kernel, params, cache) -> dict:
    """Prefill s, decode tok/s (median), cache bytes, and RSS: the peak increase over the whole
    run, the prefill's peak and the decode phase's peak (absolute MB, VmHWM reset before each)."""
    import attnlab
    from attnlab.bench.measure import peak_rss_mb, reset_peak_rss, rss_mb

    reset_peak_rss()
    base = rss_mb()
    with torch.inference_mode(), attnlab.attach(model, kernel=kernel, **params):
        t0 = time.perf_counter()
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        prefill = time.perf_counter() - t0
        prefill_peak = peak_rss_mb()
        token, times = out.logits[:, -1:].argmax(-1), []
        del out
        reset_peak_rss()
        decode_base = rss_mb()
        for _ in range(steps):
            t0 = time.perf_counter()
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            times.append(time.perf_counter() - t0)
            token = out.logits[:, -1:].argmax(-1)
    decode_peak = peak_rss_mb()
    return {"prefill_s": prefill, "decode_tok_s": 1.0 / statistics.median(times), "cache_mb": cache_bytes(cache) / 2**20,
            "peak_rss_increase_mb": max(prefill_peak, decode_peak) - base, "rss_before_mb": base,
            "prefill_peak_rss_mb": prefill_peak, "decode_start_rss_mb": decode_base, "decode_peak_rss_mb": decode_peak}


LABELS = ("softmax (sdpa + DynamicCache)", "hybrid w=64 (StateCache)", "linear (StateCache)")


def variants(model, maps_dir: str):
    """(label, kernel, params, make_cache) for the softmax model and the two converted ones."""
    from attnlab.convert import StateCache, build_maps, load
    from transformers import DynamicCache

    trained = Path(maps_dir, "convert_config.json").is_file()
    hyb = load(maps_dir) if trained else build_maps(model, "hedgehog", 64)
    lin = build_maps(model, "hedgehog", 0)
    return trained, [(LABELS[0], "sdpa", {}, lambda: DynamicCache(config=model.config)),
                     (LABELS[1], "hybrid", {"maps": hyb}, lambda: StateCache(model, 64)),
                     (LABELS[2], "linear", {"maps": lin}, lambda: StateCache(model, 0))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--maps", default="/tmp/attnlab-convert/hedgehog-w64")
    ap.add_argument("--out", default=str(RESULTS / "decode.json"))
    ap.add_argument("--fresh", action="store_true", help="one new process per (context, variant)")
    ap.add_argument("--one", default=None, help="(internal) CONTEXT:VARIANT_INDEX, print its row as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = {"model": "SmolLM2-135M-Instruct", "threads": 1, "steps": args.steps, "fresh_processes": args.fresh,
           "command": "python3 benchmarks/convert_decode.py " + " ".join(sys.argv[1:]), "rows": []}
    if args.fresh:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", TRANSFORMERS_VERBOSITY="error")
        res["maps"] = args.maps
        for n in args.contexts:
            for i in range(len(LABELS)):
                out = subprocess.run([sys.executable, __file__, "--one", f"{n}:{i}", "--steps", str(args.steps),
                                      "--maps", args.maps], capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    raise SystemExit(out.stderr[-3000:])
                res["rows"].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(json.dumps(res["rows"][-1]), flush=True)
                Path(args.out).write_text(json.dumps(res, indent=2))
        return
    import attnlab
    from attnlab.bench import corpora

    model, tok = attnlab.load()
    trained, todo = variants(model, args.maps)
    all_ids = tok(corpora.kjv(), add_special_tokens=False, return_tensors="pt")["input_ids"]
    res["maps"] = args.maps if trained else "untrained hedgehog (speed only)"
    if args.one:
        n, i = map(int, args.one.split(":"))
        label, kernel, params, make = todo[i]
        print(json.dumps({"context": n, "variant": label, **run_one(model, all_ids[:, :n], args.steps, kernel,
                                                                     params, make())}))
        return
    for n in args.contexts:
        ids = all_ids[:, :n]
        for label, kernel, params, make in todo:
            row = {"context": n, "variant": label, **run_one(model, ids, args.steps, kernel, params, make())}
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
            Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
