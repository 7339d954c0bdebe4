"""Streaming per-head statistics vs a plain SDPA forward (and vs eager maps), on SmolLM2.

    flock /tmp/attnlab-heavy.lock python benchmarks/head_stats.py \
        [--tokens 4096 8192] [--repeats 3] [--maps 4096] [--maps-repeats 1] [--block-size 256] [--threads N]

Variants, each run in its own fresh subprocess so that its peak RSS (ru_maxrss) is its own:
  sdpa   the stock model's SDPA forward (base model, no LM head), no attnlab
  stats  attnlab's HeadStats pass: eager kernel in query blocks + streamed statistics,
         then the per-head table (head_stats without tokenization)
  maps   stock eager forward with output_attentions=True, then the same statistics from
         the full maps (`attnlab.observe.reference`), what map-based tools must do
Input: real text (Hamlet) of exactly N tokens. Before timing, the statistics of the
streaming pass are checked against the map-based reference at 512 tokens. Reports the
median of the repeats per variant and the ratios to the SDPA median of the same run.
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


def _inputs(tok, model, n: int) -> dict:
    import torch

    from attnlab.bench.corpora import passage

    ids = tok(passage(tok, n + 16), add_special_tokens=False, return_tensors="pt")["input_ids"][:, :n]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _maps_stats(model, enc) -> float:
    """Eager output_attentions=True, then the statistics layer by layer, freeing each map."""
    import torch

    from attnlab.observe.reference import layer_stats

    model.set_attn_implementation("eager")
    with torch.no_grad():
        maps = list(model.base_model(**enc, output_attentions=True).attentions)
    real = enc["attention_mask"].bool()
    for layer in range(len(maps)):
        layer_stats(maps[layer], real, causal=True, dtype=torch.float32)
        maps[layer] = None
    return 0.0


def child(variant: str, n: int, block_size: int, threads: int | None) -> None:
    """Run one variant once and print {"variant", "tokens", "seconds", "rss_mb", "rss_loaded_mb"}."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    import attnlab
    from attnlab.observe.heads import DEFAULTS, run_stats, stats_frame

    model, tok = attnlab.load()
    enc = _inputs(tok, model, n)
    with torch.no_grad():  # warm-up on a few tokens: thread pools, allocator
        model.base_model(**_inputs(tok, model, 16))
    loaded = _rss_mb()
    start = time.perf_counter()
    if variant == "sdpa":
        with torch.no_grad():
            model.base_model(**enc)
    elif variant == "stats":
        stats = run_stats(model, enc, block_size=block_size)
        stats_frame(stats, tok, enc, dict(DEFAULTS))
    elif variant == "maps":
        _maps_stats(model, enc)
    else:
        raise ValueError(f"unknown variant {variant!r}; valid: sdpa, stats, maps")
    seconds = time.perf_counter() - start
    print(json.dumps({"variant": variant, "tokens": n, "seconds": seconds, "rss_mb": _rss_mb(),
                      "rss_loaded_mb": loaded}))


def parity(n: int = 512) -> float:
    """Max |streamed - map-based| over every scalar statistic at n tokens."""
    import torch

    import attnlab
    from attnlab.observe.heads import run_stats
    from attnlab.observe.reference import stats_from_maps
    from attnlab.observe.stats import SCALARS

    model, tok = attnlab.load()
    enc = _inputs(tok, model, n)
    got = {site.layer: v for site, v in run_stats(model, enc, block_size=128).result().items()}  # one stack
    model.set_attn_implementation("eager")
    with torch.no_grad():
        maps = model.base_model(**enc, output_attentions=True).attentions
    ref = stats_from_maps(maps, enc["attention_mask"].bool(), causal=True)
    return max(float((got[l][s] - ref[l][s]).abs().max()) for l in ref for s in SCALARS)


def run(variant: str, n: int, block_size: int, threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--tokens", str(n), "--block-size", str(block_size)]
    cmd += ["--threads", str(threads)] if threads else []
    # idle OpenMP threads sleep instead of spinning: on a shared CPU spinning threads stall
    # every parallel region of the many-small-ops variants (same for every variant)
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"variant": variant, "tokens": n, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _available_gb() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def _summary(runs: list[dict], variant: str, n: int) -> dict | None:
    ok = [r for r in runs if r["variant"] == variant and r["tokens"] == n and "error" not in r]
    if not ok:
        return None
    return {"runs": len(ok), "seconds": statistics.median(r["seconds"] for r in ok),
            "rss_mb": statistics.median(r["rss_mb"] for r in ok),
            "all_seconds": [round(r["seconds"], 2) for r in ok]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, nargs="+", default=[4096, 8192])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--maps", type=int, nargs="*", default=[4096], help="lengths for the eager-maps variant")
    p.add_argument("--maps-repeats", type=int, default=1)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=None, help="torch threads per variant (default: torch's)")
    p.add_argument("--out", default=None, help="also write the runs to this JSON file (docs_tables.py renders it)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.child, a.tokens[0], a.block_size, a.threads)
    started, load = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()[0]
    max_diff = parity()
    print(f"parity at 512 tokens: max |streamed - maps| = {max_diff:.2e}", flush=True)
    runs = []
    for n in a.tokens:
        for i in range(a.repeats):  # alternate the order so drifting machine load hits both
            for variant in (("sdpa", "stats") if i % 2 == 0 else ("stats", "sdpa")):
                runs.append(run(variant, n, a.block_size, a.threads))
                print(json.dumps(runs[-1]), flush=True)
        if n in a.maps:
            for _ in range(a.maps_repeats):
                need = 30 * 9 * n * n * 4 / 2**30 + 2.5
                if _available_gb() < need:
                    runs.append({"variant": "maps", "tokens": n, "error": f"skipped: needs ~{need:.0f} GB free"})
                else:
                    runs.append(run("maps", n, a.block_size, a.threads))
                print(json.dumps(runs[-1]), flush=True)
    print("\n" + report(runs, a.tokens))
    if a.out:
        doc = {"command": "python3 benchmarks/head_stats.py " + " ".join(sys.argv[1:]), "started": started,
               "load_average_at_start": load, "parity_max_diff": max_diff, "tokens": a.tokens, "runs": runs}
        Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")


def report(runs: list[dict], lengths) -> str:
    """The markdown table: per length and variant, median seconds and peak RSS and their ratios to sdpa."""
    lines = ["| tokens | variant | median s | ratio s | peak RSS MB | ratio RSS | runs (s) |",
             "|---|---|---|---|---|---|---|"]
    for n in lengths:
        base = _summary(runs, "sdpa", n)
        for variant in ("sdpa", "stats", "maps"):
            s = _summary(runs, variant, n)
            if s is None or base is None:
                continue
            lines.append(f"| {n} | {variant} | {s['seconds']:.1f} | {s['seconds'] / base['seconds']:.2f}x | "
                         f"{s['rss_mb']:.0f} | {s['rss_mb'] / base['rss_mb']:.2f}x | "
                         f"{', '.join(f'{x:.1f}' for x in s['all_seconds'])} |")
    lines += [f"{r['variant']} at {r['tokens']}: {r['error']}" for r in runs if "error" in r]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
