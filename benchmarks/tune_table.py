"""Summarise benchmarks/results/tune/<tag>_*.json as the markdown table of docs/tune.md.

Per task and run: test accuracy and the paired delta vs zero-shot, each as the mean over
seeds with a 95% t-interval across seeds (with one seed: its paired bootstrap 95% CI over
test items), how many seeds' own paired bootstrap CI lies above 0, trainable parameters
and their ratio to LoRA (q,v), training seconds and tokens/s, seeds run.

    python benchmarks/tune_table.py --tag grid
    python benchmarks/tune_table.py --data hyperbaton     # accuracy vs training items (dataN tags)
    python benchmarks/tune_table.py --heads               # heads_overlap.json (tune_heads.py)

docs_tables.py renders the same tables into docs/generated/tune_*.md.
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


def seed_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval across seeds (Student t with n - 1 degrees of freedom)."""
    from scipy.stats import t

    m = statistics.mean(values)
    half = t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return m, m - half, m + half


def row(task: str, name: str, rs: list, lora_params: dict) -> str:
    if name == "zero_shot":
        t = rs[0]["test"]
        return f"| {task} | zero-shot | {t['acc']:.3f} [{t['lo']:.3f}, {t['hi']:.3f}] | | | 0 | | | | |"
    if len(rs) == 1:
        s, d = rs[0]["test"]["steered"], rs[0]["test"]["delta"]
        acc = f"{s['acc']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]"
        delta = f"{d['delta']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"
    else:
        acc = "{:.3f} [{:.3f}, {:.3f}]".format(*seed_interval([r["test"]["steered"]["acc"] for r in rs]))
        delta = "{:+.3f} [{:+.3f}, {:+.3f}]".format(*seed_interval([r["test"]["delta"]["delta"] for r in rs]))
    above = f"{sum(r['test']['delta']['lo'] > 0 for r in rs)}/{len(rs)}"
    p = rs[0]["trainable_params"]
    ratio = ""
    if lora_params.get(task) and p:
        x = lora_params[task] / p
        ratio = f"1/{x:.0f}" if x >= 1 else f"{1 / x:.0f}x"
    secs = statistics.mean(r["train_seconds"] for r in rs)
    tps = statistics.mean(r["tokens_per_s"] for r in rs)
    extra = f" ({len(rs[0]['open_heads'])} open)" if rs[0].get("open_heads") is not None else ""
    return (f"| {task} | {name}{extra} | {acc} | {delta} | {above} | {p:,} | {ratio} | {secs:.0f} | {tps:.0f} | "
            f"{','.join(str(r['seed']) for r in rs)} |")


def table(tag: str) -> str:
    """The markdown table of every <tag>_* run."""
    runs = load(tag)
    lora = {t: rs[0]["trainable_params"] for (t, n), rs in runs.items() if n == "lora_qv"}
    lines = ["| task | run | test acc [95% CI] | delta vs zero-shot [95% CI] | seeds with paired CI > 0 | "
             "trainable params | vs LoRA q,v | train s | tokens/s | seeds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task in sorted({t for t, _ in runs}):
        for name in ORDER + sorted({n for t, n in runs if t == task} - set(ORDER)):
            if (task, name) in runs:
                lines.append(row(task, name, runs[(task, name)], lora))
    return "\n".join(lines)


def data_table(task: str, runs_shown=("lofit_10", "lora_qv"), sizes=(32, 64, 128)) -> str:
    """Test accuracy vs training items: dataN_<task>_* runs, and the grid (all items)."""
    def cell(rs):
        if not rs:
            return "not run"
        accs = [r["test"]["steered"]["acc"] for r in rs]
        if len(accs) == 1:
            return f"{accs[0]:.3f} (1 seed)"
        return "{:.3f} [{:.3f}, {:.3f}]".format(*seed_interval(accs)) + f" ({len(accs)} seeds)"

    grid = load("grid")
    params = {n: grid[(task, n)][0]["trainable_params"] for n in runs_shown if (task, n) in grid}
    head = " | ".join(f"{n} ({params.get(n, 0):,} params)" for n in runs_shown)
    lines = [f"| train items | {head} |", "| --- |" + " --- |" * len(runs_shown)]
    for n in sizes:
        got = load(f"data{n}")
        lines.append(f"| {n} | " + " | ".join(cell(got.get((task, r), [])) for r in runs_shown) + " |")
    items = (grid[(task, runs_shown[0])][0].get("budget") or {}).get("train_items") if (task, runs_shown[0]) in grid else None
    lines.append(f"| all{'' if items is None else f' ({items})'} | " +
                 " | ".join(cell(grid.get((task, r), [])) for r in runs_shown) + " |")
    return "\n".join(lines)


def heads_table(path: Path = OUT / "heads_overlap.json") -> str:
    """LoFiT's chosen heads vs the probed induction / retrieval heads (tune_heads.py)."""
    doc = json.loads(path.read_text())
    kinds = list(doc["kinds"])
    lines = ["| task | run | K heads | seeds | " + " | ".join(f"{k} heads in K (mean) | by chance" for k in kinds) + " |",
             "| --- | --- | --- | --- |" + " --- | --- |" * len(kinds)]
    for e in doc["summary"]:
        cells = " | ".join(f"{e[f'{k}_overlap_mean']:.2f} | {e[f'{k}_expected_random']:.2f}" for k in kinds)
        lines.append(f"| {e['task']} | {e['run']} | {e['k']} | {e['seeds']} | {cells} |")
    counts = ", ".join(f"{len(v)} {k}" for k, v in doc["kinds"].items())
    lines += ["", f"Probe source: {doc['source']}; {counts} heads of {doc['n_heads']} (score >= "
                  f"{', '.join(f'{k} {t}' for k, t in doc['thresholds'].items())})."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", default="grid")
    ap.add_argument("--data", default=None, help="a task: accuracy vs training items")
    ap.add_argument("--heads", action="store_true", help="the heads-vs-taxonomy table")
    a = ap.parse_args()
    print(data_table(a.data) if a.data else heads_table() if a.heads else table(a.tag))


if __name__ == "__main__":
    main()
