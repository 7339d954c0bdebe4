"""Experiment: masking the top-k retrieval heads vs k random heads on needle-in-a-haystack.

Retrieval scores come from `attnlab.observe.probes.retrieval_scores` (the Retrieval Head
paper's copy-paste score, on its own needle cases: seed 0). The evaluation cases are
different needles (seed 1: other names, numbers and haystack offsets), ~1k tokens, depths
spread over the haystack. Each condition masks heads (output zeroed, `steer.mask`, kernel
sdpa) and greedily generates 6 tokens; exact match on the number. Random heads are drawn
uniformly from the heads outside that condition's top-k set, `draws` times per k.

Run: flock /tmp/attnlab-heavy.lock python benchmarks/steer_retrieval_heads.py
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

OUT = Path(__file__).parent / "results"


def accuracy(model, tok, cases, heads) -> list[bool]:
    """Exact-match per case with `heads` masked (none: the unmodified model on sdpa)."""
    import torch

    from attnlab import attach
    from attnlab.bench.needles import is_correct
    from attnlab.steer import mask

    mods = [mask(heads=heads)] if heads else []
    out = []
    with torch.inference_mode(), attach(model, kernel="sdpa", modify=mods):
        for case in cases:
            ids = tok(case.prompt, return_tensors="pt")["input_ids"]
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6,
                                 pad_token_id=tok.eos_token_id)
            out.append(is_correct(case, tok.decode(gen[0, ids.shape[1]:])))
    return out


def main() -> None:
    import attnlab
    from attnlab.bench.corpora import shakespeare
    from attnlab.bench.needles import make_cases
    from attnlab.observe.probes import retrieval_scores
    from attnlab.steer.kinds import top_heads

    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--ks", default="5,10,20")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model, tok = attnlab.load()
    t0 = time.perf_counter()
    scores = retrieval_scores(model, tok).rename(columns={"retrieval": "score"})
    print(f"retrieval scores: {len(scores)} heads, {int(scores['retrieval_events'].iloc[0])} copy events, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    depths = [(i + 0.5) / args.cases for i in range(args.cases)]
    cases = make_cases(tok, shakespeare("hamlet"), [args.length], depths, seed=1)
    all_heads = [(int(l), int(h)) for l, h in zip(scores["layer"], scores["head"])]
    rows = [{"condition": "none", "k": 0, "draw": None, "heads": [], "correct": accuracy(model, tok, cases, [])}]
    _show(rows[-1])
    for k in map(int, args.ks.split(",")):
        top = top_heads(scores, k)
        rows.append({"condition": "top", "k": k, "draw": None, "heads": top, "correct": accuracy(model, tok, cases, top)})
        _show(rows[-1])
        rest = [h for h in all_heads if h not in top]
        for d in range(args.draws):
            pick = sorted(random.Random(1000 * k + d).sample(rest, k))
            rows.append({"condition": "random", "k": k, "draw": d, "heads": pick,
                         "correct": accuracy(model, tok, cases, pick)})
            _show(rows[-1])
    OUT.mkdir(exist_ok=True)
    top20 = top_heads(scores, 20)
    result = {"cases": len(cases), "length": args.length, "rows": rows,
              "top_scores": [{"layer": l, "head": h, "score": float(scores.set_index(["layer", "head"]).loc[(l, h), "score"])}
                             for l, h in top20]}
    (OUT / "steer_retrieval_heads.json").write_text(json.dumps(result, indent=1))
    plot(result, OUT / "steer_retrieval_heads.png")
    print(f"total {time.perf_counter() - t0:.0f} s; wrote {OUT / 'steer_retrieval_heads.json'}")


def _show(row) -> None:
    acc = sum(row["correct"]) / len(row["correct"])
    print(f"{row['condition']:7s} k={row['k']:2d} draw={row['draw']!s:4s} accuracy {acc:.2f}", flush=True)


def plot(result, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = lambda r: sum(r["correct"]) / len(r["correct"])
    base = next(acc(r) for r in result["rows"] if r["condition"] == "none")
    ks = sorted({r["k"] for r in result["rows"] if r["k"]})
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.axhline(base, color="grey", ls="--", label="no heads masked")
    ax.plot(ks, [acc(next(r for r in result["rows"] if r["condition"] == "top" and r["k"] == k)) for k in ks],
            "o-", color="crimson", label="top-k retrieval heads masked")
    for k in ks:
        vals = [acc(r) for r in result["rows"] if r["condition"] == "random" and r["k"] == k]
        ax.plot([k] * len(vals), vals, "x", color="steelblue")
    ax.plot([], [], "x", color="steelblue", label="k random heads masked (each draw)")
    ax.set_xlabel("heads masked (k)")
    ax.set_ylabel(f"needle accuracy ({result['cases']} cases, ~{result['length']} tok)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(ks)
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
