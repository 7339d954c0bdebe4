"""Experiment: do sink_scale (ZeroTuning) and calibrate (ACT) help SmolLM2-135M on real tasks?

Per task: baseline vs fixed settings on the held-out test split (paired, same items,
kernel eager for every run), then a greedy search (`attnlab.evals.search`) on the dev
split whose chosen setting is reported on the test split. Accuracy by summed
log-likelihood of each choice; 95% bootstrap CIs; paired bootstrap CI of each delta.
Run: flock /tmp/attnlab-heavy.lock python benchmarks/steer_tasks.py --tasks a,b,c
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

OUT = Path(__file__).parent / "results"
FIXED = ("sink_scale:factor=0.5,layers=0-9", "calibrate:factor=0.4,threshold=5,layers=all")
SEARCH_METHODS = {"sink_scale": ("factor=0.5", "factor=2.0"), "calibrate": ("factor=0.4,threshold=5",)}


def run_task(model, tok, task, args) -> dict:
    from attnlab.evals.run import summarize
    from attnlab.evals.scoring import score
    from attnlab.evals.search import search
    from attnlab.evals.tasks import load_task
    from attnlab.steer import parse_modifier

    t0 = time.perf_counter()
    test = load_task(task, "test", limit=args.test)
    base = score(model, tok, test, (), "eager")
    fixed = {}
    for spec in FIXED:
        steered = score(model, tok, test, [parse_modifier(spec)], "eager")
        fixed[spec] = summarize(test, base, steered)
        _show(task, spec, fixed[spec])
    found = search(model, tok, task, parse_modifier, steps=args.steps, limit=args.dev, methods=SEARCH_METHODS,
                   group=args.group)
    found["test"] = summarize(test, base, score(model, tok, test, [parse_modifier(s) for s in found["chosen"]], "eager")
                              if found["chosen"] else None)
    _show(task, "searched: " + ("; ".join(found["chosen"]) or "none"), found["test"])
    return {"task": task, "n_test": len(test), "fixed": fixed, "search": found, "seconds": time.perf_counter() - t0}


def _show(task, what, res) -> None:
    b = res["baseline"]
    line = f"{task:20s} {what:46s} base {b['acc']:.3f} [{b['lo']:.3f},{b['hi']:.3f}]"
    if "delta" in res:
        d = res["delta"]
        line += f"  steered {res['steered']['acc']:.3f}  delta {d['delta']:+.3f} [{d['lo']:+.3f},{d['hi']:+.3f}]"
    print(line, flush=True)


def plot(results, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.4), squeeze=False)
    for ax, res in zip(axes[0], results):
        rows = [(s.replace(",threshold=5", "").replace("layers=", "L"), r) for s, r in res["fixed"].items()]
        chosen = "\n+ ".join(res["search"]["chosen"]) or "nothing beat dev baseline"
        rows.append((f"searched: {chosen}".replace(",threshold=5", "").replace("layers=", "L"), res["search"]["test"]))
        for y, (label, r) in enumerate(rows):
            d = r.get("delta", {"delta": 0.0, "lo": 0.0, "hi": 0.0})
            ax.errorbar(d["delta"], y, xerr=[[d["delta"] - d["lo"]], [d["hi"] - d["delta"]]], fmt="o", capsize=3)
        ax.set_yticks(range(len(rows)), [l for l, _ in rows], fontsize=6)
        ax.axvline(0, color="grey", ls="--")
        b = res["search"]["test"]["baseline"]
        ax.set_title(f"{res['task']} (test n={res['n_test']}, base {b['acc']:.2f})", fontsize=8)
        ax.set_xlabel("accuracy delta vs baseline (paired 95% CI)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    import attnlab

    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="emoji_movie,general_knowledge,hindu_knowledge")
    ap.add_argument("--dev", type=int, default=24, help="dev items for the search")
    ap.add_argument("--test", type=int, default=50, help="held-out test items")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--group", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model, tok = attnlab.load()
    results = [run_task(model, tok, t, args) for t in args.tasks.split(",")]
    OUT.mkdir(exist_ok=True)
    (OUT / "steer_tasks.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    plot(results, OUT / "steer_tasks.png")
    print(f"wrote {OUT / 'steer_tasks.json'}")


if __name__ == "__main__":
    main()
