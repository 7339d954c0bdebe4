"""The tuning grid: zero-shot vs lofit (3%, 10%) vs gates vs head_lora vs PEFT LoRA (q,v; q,k,v,o) vs IA3.

One task per invocation, every method with the same steps, batch, data and seed; one JSON
per run in benchmarks/results/tune/ (existing ones are skipped, so the grid resumes).
Runs with torch.set_num_threads(1) (the machine is shared).

    python benchmarks/tune_grid.py --task sports_understanding --steps 30 --seed 0
    python benchmarks/tune_grid.py --model gemma3-270m --tag gemma3 --task hyperbaton --steps 24 --seed 0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

RUNS = {  # name -> train() arguments
    "lofit_3": dict(method="lofit", heads="3%"),
    "lofit_10": dict(method="lofit", heads="10%"),
    "gates": dict(method="gates"),
    "head_lora": dict(method="head_lora", heads="3%"),
    "lora_qv": dict(method="lora", targets="q,v"),
    "lora_qkvo": dict(method="lora", targets="q,k,v,o"),
    "ia3": dict(method="ia3"),
    "lofit_3_random": dict(method="lofit", heads="3%", select="random"),
}
OUT = Path(__file__).parent / "results" / "tune"


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def run_one(model, tok, task, name, args, base_scores, budget, seed) -> dict:
    from attnlab.tune import train

    t0 = time.perf_counter()
    adapter = train(model, tok, task=task, seed=seed, baseline=base_scores, show=False, **budget, **args)
    wall = time.perf_counter() - t0
    m = adapter.meta
    hist, sel = m["history"], m.get("selection_history") or {}
    return {"task": task, "run": name, "seed": seed, "args": args, "budget": budget,
            "trainable_params": adapter.num_trainable(), "heads": adapter.heads if len(adapter.heads) < 200 else None,
            "open_heads": m.get("open_heads"), "dev_acc": m["dev_acc"], "test": m["test"],
            "train_seconds": hist["train_seconds"] + sel.get("train_seconds", 0.0),
            "tokens": hist["tokens"] + sel.get("tokens", 0),
            "tokens_per_s": (hist["tokens"] + sel.get("tokens", 0)) / (hist["train_seconds"] + sel.get("train_seconds", 0.0)),
            "wall_seconds": wall, "selection": m["selection"], "splits": m["splits"],
            "base_hash": m["base_hash"], "history": hist, "commit": commit()}


def main() -> None:
    import torch

    import attnlab
    from attnlab.evals.bootstrap import accuracy_ci
    from attnlab.evals.scoring import score
    from attnlab.tune.data import task_splits

    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True)
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-items", type=int, default=None)
    ap.add_argument("--test-items", type=int, default=200)
    ap.add_argument("--dev-items", type=int, default=32)
    ap.add_argument("--tag", default="grid")
    ap.add_argument("--model", default=None, help="attnlab.load() name (default SmolLM2-135M), e.g. gemma3-270m")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, tok = attnlab.load(a.model)
    budget = dict(steps=a.steps, batch_size=a.batch_size, train_items=a.train_items, test_items=a.test_items,
                  dev_items=a.dev_items)
    test = task_splits(a.task, a.train_items, a.test_items).test
    OUT.mkdir(parents=True, exist_ok=True)
    base = score(model, tok, test, (), "sdpa")
    zs = OUT / f"{a.tag}_{a.task}_zero_shot.json"
    if not zs.exists():
        zs.write_text(json.dumps({"task": a.task, "run": "zero_shot", "test": accuracy_ci(base.correct(test)),
                                  "n": len(test), "commit": commit()}, indent=1))
    for name in a.runs.split(","):
        path = OUT / f"{a.tag}_{a.task}_{name}_s{a.seed}.json"
        if path.exists():
            continue
        res = run_one(model, tok, a.task, name, RUNS[name], base, budget, a.seed)
        res["model"] = a.model or "smollm2-135m"
        path.write_text(json.dumps(res, indent=1))
        t = res["test"]
        print(f"{a.task} {name} seed {a.seed}: base {t['baseline']['acc']:.3f} tuned {t['steered']['acc']:.3f} "
              f"delta {t['delta']['delta']:+.3f} [{t['delta']['lo']:+.3f},{t['delta']['hi']:+.3f}] "
              f"params {res['trainable_params']} {res['tokens_per_s']:.0f} tok/s {res['wall_seconds']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
