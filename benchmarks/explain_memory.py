"""Peak memory of rollout and flow at long context vs one SDPA forward, each in its own process.

    flock /tmp/attnlab-heavy.lock python benchmarks/explain_memory.py --tokens 4096

Each measurement runs in a fresh subprocess (ru_maxrss is a high-water mark): load the
model, build a real-text input (Hamlet) of exactly --tokens tokens, then run one of
  sdpa     the base model's forward under attach(kernel="sdpa") (the baseline),
  rollout  capture + backward propagation of the last token's row through all layers,
  flow     capture + pruned graph (top-m=8) + max-flow for the 32 strongest sources.
Printed: the work's peak RSS (VmHWM reset after loading the model), RSS after loading
(before the work), the work's extra memory (peak - after load), and seconds of the work.
What holding all maps would need: layers * heads * T^2 * 4 bytes (printed for reference).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, n: int) -> dict:
    import torch

    import attnlab
    from attnlab.bench.corpora import shakespeare
    from attnlab.explain.capture import base_model, capture
    from attnlab.explain.flow import flow_from_calls
    from attnlab.explain.rollout import rollout_from_calls

    from attnlab.bench.measure import peak_rss_mb, reset_peak_rss, rss_mb

    model, tok = attnlab.load()
    ids = torch.tensor([tok(shakespeare("hamlet"), add_special_tokens=False)["input_ids"][:n]])
    with torch.no_grad():  # touch every weight page once, so the work's peak is its own
        base_model(model)(input_ids=ids[:, :16])
    process_peak_load = _rss_mb()
    reset = reset_peak_rss()  # from here VmHWM is the work's own peak
    loaded = rss_mb()
    t0 = time.perf_counter()
    target = torch.tensor([n - 1])
    if mode == "sdpa":
        with attnlab.attach(model, kernel="sdpa"), torch.no_grad():
            base_model(model)(input_ids=ids)
        check = None
    elif mode == "rollout":
        rel = rollout_from_calls(capture(model, ids), target)
        check = float(rel.sum())
    else:
        rel = flow_from_calls(capture(model, ids), target, top_m=8, max_sources=32)
        check = float(rel.max())
    cfg = model.config
    return {"mode": mode, "tokens": n, "peak_rss_mb": peak_rss_mb(), "rss_after_load_mb": loaded,
            "peak_reset": reset, "load_peak_mb": process_peak_load,
            "seconds": time.perf_counter() - t0, "check": check,
            "all_maps_gb": cfg.num_hidden_layers * cfg.num_attention_heads * n * n * 4 / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tokens)))
        return
    rows = []
    for mode in ("sdpa", "rollout", "flow"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--tokens", str(args.tokens)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["peak_rss_mb"]
    extra0 = rows[0]["peak_rss_mb"] - rows[0]["rss_after_load_mb"]
    print(f"{'mode':8} {'tokens':>6} {'peak RSS MB':>12} {'after load':>11} {'extra MB':>9} {'peak x sdpa':>11} "
          f"{'extra x sdpa':>12} {'seconds':>8}")
    for r in rows:
        extra = r["peak_rss_mb"] - r["rss_after_load_mb"]
        print(f"{r['mode']:8} {r['tokens']:6d} {r['peak_rss_mb']:12.0f} {r['rss_after_load_mb']:11.0f} {extra:9.0f} "
              f"{r['peak_rss_mb'] / base:11.2f} {extra / extra0:12.2f} {r['seconds']:8.1f}")
    print(f"holding all layers' maps at once would take {rows[0]['all_maps_gb']:.1f} GB (fp32)")


if __name__ == "__main__":
    main()
