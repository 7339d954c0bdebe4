"""Prefill and decode of SmolLM2-135M at long context: softmax + KV cache vs the converted model.

Same process, same prompt (KJV text), one thread: for each context length, the stock
softmax model (sdpa, transformers' DynamicCache) and the converted model (hybrid w=64 and
linear, hedgehog maps, attnlab StateCache) each prefill the context, then greedily decode
`--steps` tokens. Reported: prefill seconds, decode tokens/s (median of per-token times),
cache bytes after the decode (exact tensor bytes), and the peak RSS increase during the
prefill + decode (Linux VmHWM reset before each run).

    python3 benchmarks/convert_decode.py --contexts 2048 8192 --steps 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "convert"


def cache_bytes(cache) -> int:
    from attnlab.convert.cache import StateCache

    if isinstance(cache, StateCache):
        return cache.memory()
    return sum(layer.keys.numel() * layer.keys.element_size() * 2 for layer in cache.layers if layer.is_initialized)


def run_one(model, ids, steps, kernel, params, cache):
    """(prefill s, decode tok/s, cache bytes, peak RSS increase MB)."""
    import attnlab
    from attnlab.bench.measure import peak_rss_mb, reset_peak_rss, rss_mb

    reset_peak_rss()
    base = rss_mb()
    with torch.inference_mode(), attnlab.attach(model, kernel=kernel, **params):
        t0 = time.perf_counter()
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        prefill = time.perf_counter() - t0
        token, times = out.logits[:, -1:].argmax(-1), []
        for _ in range(steps):
            t0 = time.perf_counter()
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            times.append(time.perf_counter() - t0)
            token = out.logits[:, -1:].argmax(-1)
    return prefill, 1.0 / statistics.median(times), cache_bytes(cache), peak_rss_mb() - base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--maps", default="/tmp/attnlab-convert/hedgehog-w64")
    ap.add_argument("--out", default=str(RESULTS / "decode.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import attnlab
    from attnlab.bench import corpora
    from attnlab.convert import StateCache, build_maps, load
    from transformers import DynamicCache

    model, tok = attnlab.load()
    trained = Path(args.maps, "convert_config.json").is_file()
    hyb = load(args.maps) if trained else build_maps(model, "hedgehog", 64)
    lin = build_maps(model, "hedgehog", 0)
    text = corpora.kjv()
    all_ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    res = {"model": "SmolLM2-135M-Instruct", "threads": 1, "steps": args.steps,
           "maps": args.maps if trained else "untrained hedgehog (speed only)", "rows": []}
    variants = [("softmax (sdpa + DynamicCache)", "sdpa", {}, lambda: DynamicCache(config=model.config)),
                ("hybrid w=64 (StateCache)", "hybrid", {"maps": hyb}, lambda: StateCache(model, 64)),
                ("linear (StateCache)", "linear", {"maps": lin}, lambda: StateCache(model, 0))]
    for n in args.contexts:
        ids = all_ids[:, :n]
        for label, kernel, params, make in variants:
            prefill, tps, nbytes, peak = run_one(model, ids, args.steps, kernel, params, make())
            row = {"context": n, "variant": label, "prefill_s": prefill, "decode_tok_s": tps,
                   "cache_mb": nbytes / 2**20, "peak_rss_increase_mb": peak}
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
            Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
