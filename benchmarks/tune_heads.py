"""Which heads LoFiT picks vs the head taxonomy: overlap with induction / retrieval heads,
against the overlap K random heads would have by chance, plus the random-heads control
(offsets trained on K random heads, `lofit_3_random` in tune_grid.py).

Reads the SmolLM2-135M grid runs benchmarks/results/tune/grid_*_{lofit_3,lofit_10,lofit_3_random}_s*.json,
computes the SmolLM2-135M probes (induction: random tokens repeated, T = 64; retrieval: 2
needles of 512 tokens), writes benchmarks/results/tune/heads_overlap.json (per run) with a
summary per task and method (mean overlap over seeds vs the chance expectation).
torch.set_num_threads(1).

    python benchmarks/tune_heads.py            # fresh probes (~1-2 min) -> heads_overlap.json
    python benchmarks/tune_heads.py --stored   # retrieval heads from the stored steer benchmark
                                               #   -> heads_overlap_stored.json
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "results" / "tune"
THRESH = {"induction": 0.3, "retrieval": 0.3}


def stored_kinds() -> tuple[dict, int]:
    """Retrieval heads from the stored steer benchmark (benchmarks/results/steer_retrieval_heads.json,
    the Retrieval Head score of SmolLM2-135M on 1024-token needles), without running any probe."""
    doc = json.loads((OUT.parent / "steer_retrieval_heads.json").read_text())
    heads = {(r["layer"], r["head"]) for r in doc["top_scores"] if r["score"] >= THRESH["retrieval"]}
    return {"retrieval": heads}, 30 * 9


def probed_kinds() -> tuple[dict, int]:
    """Induction and retrieval heads from fresh probes (run_probes), and the number of heads."""
    import torch

    import attnlab
    from attnlab.observe.kinds import run_probes

    torch.set_num_threads(1)
    model, tok = attnlab.load()
    probes = run_probes(model, tok, n_needles=2, needle_length=512, induction_length=64)
    return ({k: {(int(r.layer), int(r.head)) for r in probes.itertuples() if getattr(r, k) >= t}
             for k, t in THRESH.items()}, len(probes))


def main() -> None:
    import sys

    stored = "--stored" in sys.argv
    kinds, total = stored_kinds() if stored else probed_kinds()
    rows = []
    for path in sorted(OUT.glob("grid_*_lofit_*_s*.json")):  # SmolLM2 runs only: the probes are SmolLM2's
        res = json.loads(path.read_text())
        chosen = {(h[1], h[2]) for h in res["heads"]}
        row = {"task": res["task"], "run": res["run"], "seed": res["seed"], "k": len(chosen),
               "test_acc": res["test"]["steered"]["acc"], "base_acc": res["test"]["baseline"]["acc"]}
        for k, heads in kinds.items():
            row[f"{k}_overlap"] = len(chosen & heads)
            row[f"{k}_expected_random"] = len(chosen) * len(heads) / total
        row["layers"] = sorted(l for l, _ in chosen)
        rows.append(row)
        print(json.dumps(row))
    summary = []
    for key in sorted({(r["task"], r["run"]) for r in rows}):
        group = [r for r in rows if (r["task"], r["run"]) == key]
        entry = {"task": key[0], "run": key[1], "seeds": len(group), "k": group[0]["k"]}
        for k in kinds:
            entry[f"{k}_overlap_mean"] = sum(r[f"{k}_overlap"] for r in group) / len(group)
            entry[f"{k}_expected_random"] = group[0][f"{k}_expected_random"]
        summary.append(entry)
        print(json.dumps(entry))
    doc = {"source": "stored steer_retrieval_heads.json" if stored else "run_probes", "n_heads": total,
           "kinds": {k: sorted(v) for k, v in kinds.items()}, "thresholds": THRESH, "summary": summary, "rows": rows}
    name = "heads_overlap_stored.json" if stored else "heads_overlap.json"
    (OUT / name).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
