"""Experiment: the cost of one active modifier vs none, one 2048-token prefill of SmolLM2-135M.

Conditions, timed interleaved in the same run (median of --repeats forwards each):
  sdpa                        stock fused attention through attnlab, no modifier
  sdpa + mask                 an output-level modifier on sdpa (mask 1 head in every layer)
  eager                       attnlab's exact reference kernel, no modifier
  eager + sink_scale          one probability-level modifier on all heads of all layers
  eager + mask                the output-level modifier on eager
Parity is checked first: eager and sdpa logits agree, and eager + sink_scale(1.0) equals eager.
Run: flock /tmp/attnlab-heavy.lock python benchmarks/steer_overhead.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

OUT = Path(__file__).parent / "results"


def main() -> None:
    import torch

    import attnlab
    from attnlab import attach, steer
    from attnlab.bench.corpora import passage

    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model, tok = attnlab.load()
    ids = tok(passage(tok, args.tokens), return_tensors="pt", add_special_tokens=False)["input_ids"][:, :args.tokens]
    conds = {
        "sdpa": ("sdpa", []),
        "sdpa + mask": ("sdpa", [steer.mask(heads=[(l, 0) for l in range(30)])]),
        "eager": ("eager", []),
        "eager + sink_scale": ("eager", [steer.sink_scale(0.5)]),
        "eager + mask": ("eager", [steer.mask(heads=[(l, 0) for l in range(30)])]),
    }

    def run(kernel, mods):
        with torch.inference_mode(), attach(model, kernel=kernel, modify=mods):
            t = time.perf_counter()
            logits = model(input_ids=ids, logits_to_keep=1).logits
            return time.perf_counter() - t, logits

    _, ref = run("eager", [])
    _, sd = run("sdpa", [])
    _, one = run("eager", [steer.sink_scale(1.0)])
    parity = {"eager_vs_sdpa_max_abs": float((ref - sd).abs().max()), "sink_scale_1_vs_eager_max_abs": float((ref - one).abs().max())}
    print(f"{ids.shape[1]} tokens; parity {parity}", flush=True)
    times = {k: [] for k in conds}
    for r in range(args.repeats):
        for name, (kernel, mods) in conds.items():
            times[name].append(run(kernel, mods)[0])
        print(f"repeat {r + 1}/{args.repeats} done", flush=True)
    rows = table(times)
    OUT.mkdir(exist_ok=True)
    (OUT / "steer_overhead.json").write_text(json.dumps({"tokens": int(ids.shape[1]), "repeats": args.repeats,
                                                         "parity": parity, "rows": rows, "times": times}, indent=1))


def table(times: dict) -> list[dict]:
    """Median time per condition, and the median over repeats of the ratio to eager / sdpa
    timed in the same repeat (robust to load changes on a shared machine)."""
    def paired(k, ref):
        return statistics.median(a / b for a, b in zip(times[k], times[ref]))

    rows = [{"condition": k, "median_s": statistics.median(v), "vs_eager": paired(k, "eager"),
             "vs_sdpa": paired(k, "sdpa")} for k, v in times.items()]
    print(f"{'condition':22s} {'median s':>9s} {'x eager':>8s} {'x sdpa':>8s}  (ratios: median of same-repeat ratios)")
    for r in rows:
        print(f"{r['condition']:22s} {r['median_s']:9.3f} {r['vs_eager']:8.2f} {r['vs_sdpa']:8.2f}")
    return rows


if __name__ == "__main__":
    main()
