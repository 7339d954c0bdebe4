"""Summarise benchmarks/results/tune/<tag>_*.json as the markdown table of docs/tune.md.

Per task and run: test accuracy (mean over seeds; with one seed, its bootstrap 95% CI),
the paired delta vs zero-shot [95% CI], trainable parameters and their ratio to LoRA (q,v),
training seconds and tokens/s, seeds run.

    python benchmarks/tune_table.py --tag grid
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).parent / "results" / "tune"
ORDER = ["zero_shot", "lofit_3", "lofit_10", "lofit_3_random", "gates", "head_lora", "lora_qv", "lora_qkvo", "ia3"]


def load(tag: str) -> dict:
    runs = defaultdict(list)
    for path in sorted(OUT.glob(f"{tag}_*.json")):
        if path.name.startswith("heads_"):
            continue
        res = json.loads(path.read_text())
        runs[(res["task"], res["run"])].append(res)
    return runs


def row(task: str, name: str, rs: list, lora_params: dict) -> str:
    if name == "zero_shot":
        t = rs[0]["test"]
        return f"| {task} | zero-shot | {t['acc']:.3f} [{t['lo']:.3f}, {t['hi']:.3f}] | | 0 | | | | |"
    accs = [r["test"]["steered"]["acc"] for r in rs]
    acc = f"{statistics.mean(accs):.3f}"
    if len(rs) == 1:
        s = rs[0]["test"]["steered"]
        acc += f" [{s['lo']:.3f}, {s['hi']:.3f}]"
    else:
        acc += f" ± {statistics.stdev(accs):.3f} sd"
    d = rs[0]["test"]["delta"]
    delta = f"{statistics.mean(r['test']['delta']['delta'] for r in rs):+.3f}" + (
        f" [{d['lo']:+.3f}, {d['hi']:+.3f}]" if len(rs) == 1 else "")
    p = rs[0]["trainable_params"]
    ratio = ""
    if lora_params.get(task) and p:
        x = lora_params[task] / p
        ratio = f"1/{x:.0f}" if x >= 1 else f"{1 / x:.0f}x"
    secs = statistics.mean(r["train_seconds"] for r in rs)
    tps = statistics.mean(r["tokens_per_s"] for r in rs)
    extra = f" ({len(rs[0]['open_heads'])} open)" if rs[0].get("open_heads") is not None else ""
    return (f"| {task} | {name}{extra} | {acc} | {delta} | {p:,} | {ratio} | {secs:.0f} | {tps:.0f} | "
            f"{','.join(str(r['seed']) for r in rs)} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", default="grid")
    a = ap.parse_args()
    runs = load(a.tag)
    lora = {t: rs[0]["trainable_params"] for (t, n), rs in runs.items() if n == "lora_qv"}
    print("| task | run | test acc [95% CI] | delta vs zero-shot, paired [95% CI] | trainable params | "
          "vs LoRA q,v | train s | tokens/s | seeds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for task in sorted({t for t, _ in runs}):
        for name in ORDER + sorted({n for t, n in runs if t == task} - set(ORDER)):
            if (task, name) in runs:
                print(row(task, name, runs[(task, name)], lora))


if __name__ == "__main__":
    main()
