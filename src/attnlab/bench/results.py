"""Turn raw task results into rows, ratios against the dense baseline, a summary, and files.

Rows of kernels whose parameters leak later tokens into earlier outputs (`leaky`) carry
no ppl / KL (None): they never count as keeping quality.
Ratios: speedup = dense prefill median / kernel prefill median (same run); ppl_change_pct =
100 * (ppl / dense ppl - 1); needle_delta_pts = kernel accuracy - dense accuracy, in points.
attention_speedup compares the time inside attention calls only; amdahl_limit = the
end-to-end speed-up if attention took no time at all (1 / dense non-attention share).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .spec import DENSE, EXACT

PPL_TOLERANCE_PCT = 2.0  # "quality kept": ppl within +2% of dense ...
NEEDLE_TOLERANCE_PTS = 5.0  # ... and needle accuracy within 5 points
CSV_COLUMNS = ("kernel", "length", "prefill_s", "speedup", "attention_s", "attention_share",
               "attention_speedup", "amdahl_limit", "leaky", "ppl",
               "ppl_change_pct", "kl", "needle_acc", "needle_delta_pts", "decode_tok_s", "decode_ratio",
               "peak_rss_mb", "prefill_rss_mb", "density", "parity_max_abs_diff", "repeats")


def _needle_table(results) -> dict:
    """{label: {"accuracy", "by_length": {length: accuracy}, "n"}} from needle results."""
    table = {}
    for task, res in results:
        if task["kind"] != "needles":
            continue
        items = res["needles"]
        by_length = {}
        for n in sorted({r["length"] for r in items}):
            hits = [r["correct"] for r in items if r["length"] == n]
            by_length[n] = 100.0 * sum(hits) / len(hits)
        table[task["label"]] = {"accuracy": 100.0 * sum(r["correct"] for r in items) / len(items),
                                "by_length": by_length, "n": len(items), "cases": items}
    dense = table.get(DENSE)
    for entry in table.values():
        entry["delta_pts"] = entry["accuracy"] - dense["accuracy"] if dense else None
    return table


def _row(task: dict, res: dict, dense: dict, needles: dict) -> dict:
    needle = needles.get(task["label"], {})
    acc = needle.get("by_length", {}).get(task["length"])
    dense_acc = needles.get(DENSE, {}).get("by_length", {}).get(task["length"])
    return {
        "kernel": task["label"], "name": task["kernel"], "params": task["params"], "length": task["length"],
        "prefill_s": res["prefill_s"], "prefill_all_s": res["prefill_all_s"],
        "speedup": dense["prefill_s"] / res["prefill_s"],
        "attention_s": res["attention_s"], "attention_share": res["attention_s"] / res["prefill_s"],
        "attention_speedup": dense["attention_s"] / res["attention_s"] if res["attention_s"] else None,
        "amdahl_limit": 1.0 / (1.0 - dense["attention_s"] / dense["prefill_s"]),
        "ppl": res["ppl"], "leaky": bool(res.get("leaky")),
        "ppl_change_pct": None if res["ppl"] is None else 100.0 * (res["ppl"] / dense["ppl"] - 1.0),
        "ppl_tokens": res["ppl_tokens"], "kl": res["kl"], "kl_positions": res["kl_positions"],
        "needle_acc": acc, "needle_delta_pts": None if acc is None or dense_acc is None else acc - dense_acc,
        "decode_tok_s": res["decode_tok_s"], "decode_ratio": res["decode_tok_s"] / dense["decode_tok_s"],
        "peak_rss_mb": res["peak_rss_mb"], "prefill_rss_mb": res["prefill_rss_mb"],
        "rss_loaded_mb": res["rss_loaded_mb"], "density": res["density"],
        "parity_ok": res["parity"]["ok"], "parity_max_abs_diff": res["parity"]["max_abs_logit_diff"],
        "repeats": len(res["prefill_all_s"]),
    }


def crossover(rows: list[dict]) -> dict:
    """Per kernel: the measured lengths where it beats dense, and the length from which on
    it is faster at every longer measured length (None: never within the measured range)."""
    out = {}
    for label in dict.fromkeys(r["kernel"] for r in rows if r["kernel"] != DENSE):
        mine = sorted((r["length"], r["speedup"]) for r in rows if r["kernel"] == label)
        faster_from = None
        for length, speedup in reversed(mine):
            if speedup <= 1.0:
                break
            faster_from = length
        slower = [n for n, s in mine if faster_from is None or n < faster_from]
        out[label] = {"faster_from": faster_from, "sdpa_faster_at": slower,
                      "speedups": {n: s for n, s in mine}}
    return out


def best_tradeoff(rows: list[dict], needles: dict) -> dict:
    """Per length: the fastest sparse kernel that keeps quality, and the fastest overall."""
    out = {}
    sparse = [r for r in rows if r["name"] not in EXACT]
    for length in sorted({r["length"] for r in rows}):
        here = [r for r in sparse if r["length"] == length]
        if not here:
            continue

        def kept(r):  # when the run tested needles, a kernel that skipped them cannot qualify
            if r["ppl_change_pct"] is None:  # leaky, not scored: cannot show it kept quality
                return False
            delta = needles.get(r["kernel"], {}).get("delta_pts")
            needle_ok = (delta is None and not needles) or (delta is not None and delta >= -NEEDLE_TOLERANCE_PTS)
            return r["ppl_change_pct"] <= PPL_TOLERANCE_PCT and needle_ok

        good = [r for r in here if kept(r)]
        pick = max(good, key=lambda r: r["speedup"]) if good else None
        fastest = max(here, key=lambda r: r["speedup"])
        out[length] = {"best_quality_kept": pick and _brief(pick), "fastest": _brief(fastest)}
    return out


def _brief(r: dict) -> dict:
    keys = ("kernel", "speedup", "ppl_change_pct", "kl", "density", "attention_share")
    return {k: r[k] for k in keys}


def memory_ratios(rows: list[dict], a: str = "chunked", b: str = "eager") -> dict:
    """{length: {a, b peak / prefill RSS MB, ratio}} where both kernels were measured."""
    out = {}
    for length in sorted({r["length"] for r in rows}):
        ra = next((r for r in rows if r["name"] == a and r["length"] == length), None)
        rb = next((r for r in rows if r["name"] == b and r["length"] == length), None)
        if ra and rb:
            out[length] = {f"{a}_peak_mb": ra["peak_rss_mb"], f"{b}_peak_mb": rb["peak_rss_mb"],
                           f"{a}_prefill_mb": ra["prefill_rss_mb"], f"{b}_prefill_mb": rb["prefill_rss_mb"],
                           "peak_ratio": ra["peak_rss_mb"] / rb["peak_rss_mb"]}
    return out


KV_COLUMNS = ("kv", "length", "cache_mb", "cache_ratio", "other_layers_mb", "tokens_held_mean", "prefill_s",
              "prefill_overhead", "decode_tok_s", "decode_speedup", "peak_rss_decode_mb", "rss_saved_mb",
              "agreement", "needle_acc", "needle_delta_pts")


def _agreement(a: list, b: list) -> float:
    """Fraction of generated positions where two greedy continuations give the same token."""
    return sum(x == y for x, y in zip(a, b)) / max(1, min(len(a), len(b)))


def kv_rows(results: list) -> tuple[list[dict], dict]:
    """Compressed-decoding rows against the "none" run of the same length, and kv needle table."""
    needles = {}
    for task, res in results:
        if task["kind"] == "kv_needles":
            items = res["needles"]
            needles[task["kv"]] = {"accuracy": 100.0 * sum(r["correct"] for r in items) / len(items),
                                   "n": len(items), "cases": items}
    base_acc = needles.get("none", {}).get("accuracy")
    for entry in needles.values():
        entry["delta_pts"] = None if base_acc is None else entry["accuracy"] - base_acc
    base = {t["length"]: r for t, r in results if t["kind"] == "kv" and t["kv"] == "none"}
    rows = []
    for task, res in results:
        if task["kind"] != "kv":
            continue
        b = base[task["length"]]
        needle = needles.get(task["kv"], {})
        rows.append({"kv": task["kv"], "length": task["length"], "cache_mb": res["kv_bytes"] / 2 ** 20,
                     "cache_ratio": res["kv_bytes"] / b["kv_bytes"] if b["kv_bytes"] else None,
                     "other_layers_mb": res["kv_bytes_other_layers"] / 2 ** 20,
                     "tokens_held_mean": res["tokens_held_mean"], "prefill_s": res["prefill_s"],
                     "prefill_overhead": res["prefill_s"] / b["prefill_s"], "decode_tok_s": res["decode_tok_s"],
                     "decode_speedup": res["decode_tok_s"] / b["decode_tok_s"],
                     "peak_rss_decode_mb": res["peak_rss_decode_mb"],
                     "rss_saved_mb": b["peak_rss_decode_mb"] - res["peak_rss_decode_mb"],
                     "agreement": _agreement(res["tokens"], b["tokens"]), "tokens": res["tokens"],
                     "skipped_layers": res["skipped_layers"], "needle_acc": needle.get("accuracy"),
                     "needle_delta_pts": needle.get("delta_pts")})
    return rows, needles


def assemble(config, results: list) -> dict:
    """The report dict: config, one row per (kernel, length), needle table, summary."""
    needles = _needle_table(results)
    dense = {t["length"]: r for t, r in results if t["kind"] == "cell" and t["label"] == DENSE}
    rows = [_row(t, r, dense[t["length"]], needles) for t, r in results if t["kind"] == "cell"]
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(config).items() if k != "kernels"}
    cfg["kernels"] = [s.label for s in config.kernels]
    summary = {"crossover": crossover(rows), "best": best_tradeoff(rows, needles),
               "memory_chunked_vs_eager": memory_ratios(rows)}
    report = {"config": cfg, "rows": rows, "needles": needles, "summary": summary}
    if any(t["kind"] == "kv" for t, _ in results):
        report["kv_rows"], report["kv_needles"] = kv_rows(results)
    return report


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_outputs(report: dict, out: Path) -> None:
    """bench.csv (one row per kernel x length), bench.json (everything), pareto.png."""
    import csv

    out.mkdir(parents=True, exist_ok=True)

    def csv_of(columns, rows):
        def write(path):
            with open(path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
        return write

    _atomic_write(out / "bench.csv", csv_of(CSV_COLUMNS, report["rows"]))
    if report.get("kv_rows"):
        _atomic_write(out / "kv.csv", csv_of(KV_COLUMNS, report["kv_rows"]))
    _atomic_write(out / "bench.json", lambda p: p.write_text(json.dumps(report, indent=2, default=str)))
    _atomic_write(out / "pareto.png", lambda p: pareto_plot(report["rows"], p))


def pareto_plot(rows: list[dict], path: Path) -> None:
    """Quality loss (ppl change %) against prefill speed-up, one point per kernel x length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    labels = list(dict.fromkeys(r["kernel"] for r in rows))
    for i, label in enumerate(labels):
        mine = [r for r in rows if r["kernel"] == label and r["ppl_change_pct"] is not None]
        ax.plot([r["speedup"] for r in mine], [r["ppl_change_pct"] for r in mine], "o",
                color=f"C{i % 10}", label=label)
        for r in mine:
            ax.annotate(str(r["length"]), (r["speedup"], r["ppl_change_pct"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.axhline(PPL_TOLERANCE_PCT, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("prefill speed-up vs sdpa (x, same run)")
    ax.set_ylabel("perplexity change vs sdpa (%)")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.legend(fontsize=7)
    ax.set_title("Quality loss vs speed-up (one point per kernel x length)")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
