"""The conversion tables of docs/convert.md, from benchmarks/results/convert/*.json.

    python3 benchmarks/convert_report.py     # print them
    python3 benchmarks/docs_tables.py        # writes them to docs/generated/convert_*.md

ppl.json ran all six variants; ppl_part2.json re-ran three of them in a parallel process
on the same data (the same figures, other timings): a variant is shown once, from the
first file that measured it.
"""

from __future__ import annotations

import json
from pathlib import Path

RES = Path(__file__).resolve().parent / "results" / "convert"


def _load(name: str) -> dict | None:
    path = RES / name
    return json.loads(path.read_text()) if path.exists() else None


def ppl() -> str | None:
    """Held-out perplexity per feature map x window after transfer (and after the LoRA stage)."""
    main = _load("ppl.json")
    if main is None:
        return None
    seen, rows = set(), []
    for name in ("ppl.json", "ppl_part2.json"):
        for r in (_load(name) or {}).get("runs", []):
            key = (r["feature_map"], r["window"])
            if key not in seen:
                seen.add(key)
                rows.append((name, r))
    teacher = main["teacher_ppl"]
    lines = [f"Teacher (softmax) held-out perplexity **{teacher:.2f}**; a plain 64-token sliding window "
             f"(streaming, sinks = 0) **{main['window_only_ppl']:.2f}**. Transfer budget {main['train_tokens']} "
             f"tokens ({main['train_tokens'] // main['seq_len']} sequences of {main['seq_len']}), lr {main['lr']}, "
             f"{main['eval_tokens']} held-out evaluation tokens (Persuasion + Macbeth), 1 thread.", "",
             "| feature map | window | kernel | trained params | steps | MSE first -> last | transfer s | "
             "held-out ppl | recovery | file |", "|" + " --- |" * 10]
    for name, r in rows:
        mse = "-" if r["mse_first"] is None else f"{r['mse_first']:.3f} -> {r['mse_last']:.3f}"
        lines.append(f"| {r['feature_map']} | {r['window']} | {r['kernel']} | {r['trainable_params']:,} | "
                     f"{r['trained_steps']} | {mse} | {r['transfer_seconds']:.0f} | {r['ppl']:.2f} | "
                     f"{r['recovery']:.3f} | {name} |")
    lora = _load("ppl_lora.json")
    for r in (lora or {}).get("runs", []):
        lines.append(f"| {r['feature_map']} + LoRA r={r['lora_r']} (q,k,v,o) | {r['window']} | {r['kernel']} | "
                     f"{r['lora_trainable_params']:,} (LoRA) | - | next-token NLL {r['nll_first']:.3f} -> "
                     f"{r['nll_last']:.3f} | {r['lora_seconds']:.0f} (LoRA) | {r['ppl']:.2f} (before: "
                     f"{r['ppl_before_lora']:.2f}) | {r['recovery']:.3f} | ppl_lora.json |")
    curve = next((r["curve"] for _, r in rows if r.get("curve")), [])
    if curve:
        lines += ["", "Perplexity vs transfer tokens (hedgehog + window 64, first 2048 evaluation tokens): " +
                  ", ".join(f"{c['tokens']}: {c['ppl']:.2f}" for c in curve) + "."]
    return "\n".join(lines)


def ppl_gemma3(name: str = "ppl_gemma3.json") -> str | None:
    """Gemma3-270M: only its global layers converted (sliding-window layers stay softmax)."""
    d = _load(name)
    if d is None or not d.get("runs"):
        return None
    n_seq = d["train_tokens"] // d["seq_len"]
    lines = [f"Gemma3-270M: teacher held-out perplexity **{d['teacher_ppl']:.2f}**, a 64-token window on every "
             f"layer **{d['window_only_ppl']:.2f}**; only the global layers are converted, the sliding-window "
             f"layers stay softmax. Transfer {d['train_tokens']} tokens ({n_seq} sequences of {d['seq_len']}), "
             f"lr {d['lr']}, {d['eval_tokens']} evaluation tokens in sequences of {d['eval_seq_len']} "
             "(past the 512-token window), 1 thread.", "",
             "| feature map | window | kernel | trained params | steps | MSE first -> last | transfer s | "
             "transfer tokens/s | held-out ppl | recovery |", "|" + " --- |" * 10]
    part2 = _load("ppl_gemma3_part2.json")  # the remaining maps, same data and teacher figure
    for r in d["runs"] + (part2 or {}).get("runs", []):
        mse = "-" if r["mse_first"] is None else f"{r['mse_first']:.3f} -> {r['mse_last']:.3f}"
        rate = f"{d['train_tokens'] / r['transfer_seconds']:.1f}" if r["trained_steps"] else "-"
        lines.append(f"| {r['feature_map']} | {r['window']} | {r['kernel']} | {r['trainable_params']:,} | "
                     f"{r['trained_steps']} | {mse} | {r['transfer_seconds']:.0f} | {rate} | "
                     f"{r['ppl']:.2f} | {r['recovery']:.3f} |")
    lines += ["", f"`{d['command']}`" + (f"; `{part2['command']}`" if part2 else "")]
    return "\n".join(lines)


def decode() -> str | None:
    d = _load("decode.json")
    if d is None:
        return None
    lines = ["| context | variant | prefill s | decode tok/s (median) | cache MB | peak RSS increase MB |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in d["rows"]:
        lines.append(f"| {r['context']} | {r['variant']} | {r['prefill_s']:.1f} | {r['decode_tok_s']:.2f} | "
                     f"{r['cache_mb']:.1f} | {r['peak_rss_increase_mb']:.0f} |")
    lines += ["", f"{d['steps']} decode steps per variant, {d['threads']} thread, maps `{d['maps']}`."]
    return "\n".join(lines)


def decode_fresh(name: str = "decode_fresh.json") -> str | None:
    """One fresh process per (context, variant): speed ratios to the softmax model of the same
    context, cache bytes, the prefill's and the decode phase's own peak RSS."""
    d = _load(name)
    if d is None:
        return None
    base = {r["context"]: r for r in d["rows"] if r["variant"].startswith("softmax")}
    lines = ["| context | variant | prefill s | x softmax | decode tok/s | x softmax | cache MB | "
             "prefill peak RSS MB | decode peak RSS MB | vs softmax MB |", "|" + " --- |" * 10]
    for r in d["rows"]:
        b = base[r["context"]]  # every context runs its softmax row first
        lines.append(f"| {r['context']} | {r['variant']} | {r['prefill_s']:.1f} | {r['prefill_s'] / b['prefill_s']:.2f} | "
                     f"{r['decode_tok_s']:.2f} | {r['decode_tok_s'] / b['decode_tok_s']:.2f} | {r['cache_mb']:.1f} | "
                     f"{r['prefill_peak_rss_mb']:.0f} | {r['decode_peak_rss_mb']:.0f} | "
                     f"{r['decode_peak_rss_mb'] - b['decode_peak_rss_mb']:+.0f} |")
    lines += ["", f"`{d['command']}`: {d['steps']} decode steps, {d['threads']} thread, one new process per row "
                  f"(the model loaded the same way in each, so peak RSS compares across rows), maps `{d['maps']}`."]
    return "\n".join(lines)


def needles(name: str = "needles.json") -> str | None:
    d = _load(name)
    if d is None:
        return None
    lines = [f"| variant | needles found (lengths {d['lengths']}, depths {d['depths']}) |", "| --- | --- |"]
    for v in d["variants"]:
        found = sum(c["correct"] for c in v["cases"])
        lines.append(f"| {v['variant']} | {found}/{len(v['cases'])} |")
    return "\n".join(lines)


def tables() -> dict[str, str]:
    out = {"convert_ppl.md": ppl(), "convert_decode.md": decode(), "convert_decode_fresh.md": decode_fresh(),
           "convert_ppl_gemma3.md": ppl_gemma3(), "convert_needles.md": needles(),
           "convert_needles_gemma3.md": needles("needles_gemma3.json")}
    return {k: v + "\n" for k, v in out.items() if v is not None}


if __name__ == "__main__":
    for name, text in tables().items():
        print(f"## {name}\n\n{text}")
