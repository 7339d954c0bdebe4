"""On paper, from the measured runs of distributed_prefill.py (issue 16, experiment 3).

    python3 benchmarks/distributed_extrapolate.py            # writes extrapolation.json
    python3 benchmarks/distributed_extrapolate.py --table    # the measured runs as a markdown table

Reads benchmarks/results/distributed/prefill_*_w*.json and fits, over every rank of the
runs that kept few logit rows, peak RSS during the forward minus the model's RSS = a + b * local tokens (the
attention and activation part: b bytes per local token; a: fixed buffers such as the score
chunks and the sampled logits). It checks that the bytes each rank sent equal the ring's
formula 2 * (N-1) * (T/N) * H_kv * D * 4 * layers (fp32 keys and values), then scales both
to a 1M-token prefill of three model shapes: per-rank memory, the smallest power-of-two
rank count that fits a 24 GB machine (this one) and an 80 GB GPU, the longest context one
24 GB rank holds (times N for N ranks), and the communication
time per layer at 10 and 100 Gbit/s. Activation bytes per token are scaled from SmolLM2's
measured b by each model's (3 * intermediate + 6 * hidden) per token, the size of the MLP
and attention activations one layer holds at once. Writes extrapolation.json.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "results" / "distributed"
GB = 1e9

# name: layers, hidden, intermediate, heads, kv heads, head dim, parameters
SHAPES = {
    "SmolLM2-135M": (30, 576, 1536, 9, 3, 64, 135e6),
    "Llama-3.2-1B": (16, 2048, 8192, 32, 8, 64, 1.24e9),
    "Llama-3.1-8B": (32, 4096, 14336, 32, 8, 128, 8.03e9),
}


def _runs() -> list[dict]:
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("prefill_*_w*.json"))]
    if not runs:
        raise SystemExit(f"no results in {OUT}; run benchmarks/distributed_prefill.py first")
    return runs


def fit(runs) -> tuple[float, float]:
    """Least squares a + b * tokens over every rank of the runs that kept few logit rows
    (--every 2048: the [k, 49152] sampled logits would otherwise dominate): (a MB, b bytes per token)."""
    runs = [run for run in runs if run["positions_compared"] <= 64]  # sampled logits negligible (< 13 MB)
    xs = [r["tokens"] for run in runs for r in run["ranks"]]
    ys = [(r["peak_rss_mb"] - r["model_rss_mb"]) * 2**20 for run in runs for r in run["ranks"]]
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return (my - b * mx) / 2**20, b


def ring_bytes(tokens: int, world: int, layers: int, kv: int, dim: int, elem: int = 4) -> float:
    """Bytes one rank sends in a ring prefill: N-1 hops of its K and V block per layer."""
    return 2 * (world - 1) * (tokens / world) * kv * dim * elem * layers


def markdown(runs) -> str:
    """The measured runs as a markdown table, one row per run (per-rank values joined by '/')."""
    lines = ["| tokens | ranks | layout | chunks | wall s | peak RSS MB (per rank) | peak - model MB | "
             "MB sent per rank | attention s (per rank) | visible pairs M (per rank) | max abs diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in sorted(runs, key=lambda r: (r.get("block_size", 512), r["tokens"], r["world"], r["layout"])):
        ranks = run["ranks"]

        def col(fn, fmt="{:.0f}"):
            return "/".join(fmt.format(fn(r)) for r in ranks)

        diff = run.get("max_abs_diff_vs_1_rank", run.get("max_abs_diff_vs_stock_sdpa"))
        what = "vs 1 rank" if "max_abs_diff_vs_1_rank" in run else "vs stock sdpa"
        lines.append(f"| {run['tokens']} | {run['world']} | {run['layout']} | {run.get('block_size', 512)}x"
                     f"{run.get('key_block', 1024)} | {max(r['wall_seconds'] for r in ranks):.0f} | "
                     f"{col(lambda r: r['peak_rss_mb'])} | {col(lambda r: r['peak_rss_mb'] - r['model_rss_mb'])} | "
                     f"{col(lambda r: r['bytes_sent'] / 2**20)} | {col(lambda r: r['compute_seconds'])} | "
                     f"{col(lambda r: r['pairs'] / 1e6)} | {diff:.2e} {what} |")
    return "\n".join(lines)


def main() -> None:
    import sys

    runs = _runs()
    if "--table" in sys.argv:
        print(markdown(runs))
        return
    a_mb, b = fit(runs)
    smol = SHAPES["SmolLM2-135M"]
    checks = [{"tokens": run["tokens"], "world": run["world"], "layout": run["layout"],
               "measured": run["ranks"][0]["bytes_sent"], "formula": ring_bytes(run["tokens"], run["world"], *smol[:1], *smol[4:6])}
              for run in runs]
    per_token_unit = b / (3 * smol[2] + 6 * smol[1])
    table = {}
    for name, (layers, hidden, inter, heads, kv, dim, params) in SHAPES.items():
        act = per_token_unit * (3 * inter + 6 * hidden)  # bytes per local token
        row = {"activation_bytes_per_token": act, "weights_gb_bf16": 2 * params / GB, "weights_gb_fp32": 4 * params / GB}
        for world in (1, 2, 4, 8, 16, 32, 64, 128, 256):
            mem = (4 * params + a_mb * 2**20 + act * 1e6 / world) / GB
            row[f"rank_gb_fp32_N{world}"] = round(mem, 2)
        for limit in (24, 80):
            fits = [w for w in (1, 2, 4, 8, 16, 32, 64, 128, 256) if row[f"rank_gb_fp32_N{w}"] <= limit]
            row[f"ranks_to_fit_{limit}gb"] = fits[0] if fits else None
        free = 24 * GB - 4 * params - a_mb * 2**20  # what one 24 GB rank has for activations
        row["max_tokens_24gb_per_rank"] = int(free / act) if free > 0 else 0
        per_layer = 2 * 1e6 * kv * dim  # K+V elements per layer crossing each link (N-1)/N of the sequence
        for gbit in (10, 100):
            row[f"comm_s_per_layer_bf16_{gbit}gbit"] = round(per_layer * 2 / (gbit / 8 * GB), 3)
        row["attention_tflop_per_layer_causal"] = round(2 * 2 * 1e6 ** 2 * heads * dim / 2 / 1e12, 1)
        table[name] = row
    result = {"fit": {"fixed_mb": a_mb, "bytes_per_local_token": b}, "bytes_check": checks, "one_million_tokens": table}
    (OUT / "extrapolation.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
