"""The KV tables of docs/kv.md, from benchmarks/results/kv/*.json (whatever has finished).

    python3 benchmarks/kv_report.py          # print every table
    python3 benchmarks/docs_tables.py        # writes them to docs/generated/kv_*.md

Each function returns markdown (or None when its result file does not exist yet).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
RES = HERE / "results" / "kv"
MB = 2 ** 20


def _load(name: str) -> dict | None:
    path = RES / name
    return json.loads(path.read_text()) if path.exists() else None


def _groups(rows) -> dict:
    out = defaultdict(list)
    for r in rows:
        out[(r["policy"], r["ratio"])].append(r)
    return out


def _acc(rs) -> str:
    return f"{sum(bool(r['correct']) for r in rs)}/{len(rs)}" if rs else "-"


def _cell(doc, p, ratio, depths=None, score=True, mb=True) -> str:
    """'found | score | MB' of one policy x ratio in a result file (only `depths` if given)."""
    rs = [r for r in doc["rows"] if r["policy"] == p and r["ratio"] == ratio
          and (depths is None or round(r["depth"], 6) in depths)] if doc else []
    fields = [_acc(rs) if rs else "-"] + ([_score(rs)] if score else [])
    if mb:
        fields.append(f"{sum(r['kv_bytes'] for r in rs) / len(rs) / MB:.1f}" if rs else "-")
    return " | ".join(fields)


def _tova_all_rows(name: str, press, depths, before: str, mb: bool, score: bool) -> list[str]:
    """Rows of attnlab's `tova:heads=all` (kvpress's TOVA rule) beside kvpress's TOVA."""
    doc = _load(name)
    ratios = sorted({r["ratio"] for r in (doc or {}).get("rows", []) if r["ratio"] is not None})
    return [f"| tova:heads=all | {ratio} | {before}{_cell(doc, 'tova:heads=all', ratio, depths, score, mb)} | "
            f"{_cell(press, 'tova', ratio, score=score)} |" for ratio in ratios]


def _score(rs) -> str:
    """Mean partial score (variable tracking: fraction of chain names found)."""
    return f"{sum(r.get('score', float(r['correct'])) for r in rs) / len(rs):.2f}" if rs else "-"


def needles(name: str = "needles_4096.json") -> str | None:
    """Accuracy, cache bytes, compression seconds and decode speed per policy x ratio."""
    d = _load(name)
    if d is None:
        return None
    rows, groups = d["rows"], _groups(d["rows"])
    left = any(r.get("kv_bytes_left_alone") for r in rows)
    head = "| policy | ratio | needles found | cache MB (compressed layers) |" + (
        " other layers MB |" if left else "") + " scoring + compression s | decode tok/s |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for (p, ratio), rs in groups.items():
        n = len(rs)
        other = f" {sum(r.get('kv_bytes_left_alone', 0) for r in rs) / n / MB:.1f} |" if left else ""
        lines.append(f"| {p} | {ratio if ratio is not None else '-'} | {_acc(rs)} | "
                     f"{sum(r['kv_bytes'] for r in rs) / n / MB:.1f} |{other} "
                     f"{sum(r['build_seconds'] for r in rs) / n:.2f} | "
                     f"{sorted(r['decode_tokens_per_s'] for r in rs)[n // 2]:.2f} |")
    depths = sorted({round(r["depth"], 3) for r in rows})
    tokens = sorted({r["n_tokens"] for r in rows})
    lines += ["", f"{len(depths)} needles (depths {', '.join(map(str, depths))}), prompts of {tokens[0]}"
                  f"{'-' + str(tokens[-1]) if tokens[-1] != tokens[0] else ''} tokens, protocol "
                  f"`{rows[0].get('protocol', 'prompt')}`; `{d['command']}`."]
    if left:
        lines.append("Other layers: the sliding-window layers, left alone (their cache is bounded by the window).")
    return "\n".join(lines)


def side_by_side() -> str | None:
    """attnlab under its own protocol and under kvpress's, and kvpress itself, on the same needles."""
    press = _load("kvpress_4096_all.json") or _load("kvpress_4096.json")
    prompt, context = _load("needles_4096.json"), _load("needles_4096_context.json")
    if press is None or prompt is None:
        return None
    depths = {round(r["depth"], 6) for r in press["rows"]}

    def cell(doc, p, ratio):
        return _cell(doc, p, ratio, depths, score=False)

    keys = sorted({(r["policy"], r["ratio"]) for r in press["rows"]},
                  key=lambda k: (k[0] != "none", k[0], k[1] or 0))
    lines = ["| policy | ratio | attnlab, question-aware: found | MB | attnlab, kvpress's protocol: found | MB "
             "| kvpress 0.5.5: found | MB |", "|" + " --- |" * 8]
    for p, ratio in keys:
        lines.append(f"| {p} | {ratio if ratio is not None else '-'} | {cell(prompt, p, ratio)} | "
                     f"{cell(context, p, ratio)} | {cell(press, p, ratio)} |")
    lines += _tova_all_rows("needles_4096_context_tova_all.json", press, depths, "- | - | ", mb=True, score=False)
    lines += ["", f"Needles at depths {', '.join(str(round(x, 2)) for x in sorted(depths))} "
                  f"({len(press['rows'])} kvpress runs)."]
    return "\n".join(lines)


TASK_NAMES = {"multikey": "multi-key needles (4 needles, one asked for)",
              "vt": "variable tracking (VAR chain, 1 hop; score = fraction of the 2 names found)"}


def task_side_by_side(task: str) -> str | None:
    """One retrieval task per policy x ratio: attnlab question-aware (`--protocol prompt`) and
    under kvpress's protocol on all cases, attnlab and kvpress on kvpress's cases (found, mean
    score, cache MB)."""
    context, press = _load(f"{task}_4096_context.json"), _load(f"kvpress_{task}_4096.json")
    prompt = _load(f"{task}_4096_prompt.json")
    if context is None:
        return None
    picked = {round(r["depth"], 6) for r in press["rows"]} if press else set()

    def cell(doc, p, ratio, depths=None, mb=False):
        return _cell(doc, p, ratio, depths, mb=mb)

    n_all = len({round(r["depth"], 6) for r in context["rows"]})
    lines = [f"| policy | ratio | question-aware, {n_all} cases: found | score | kvpress's protocol, {n_all} cases: "
             f"found | score | MB | the same on kvpress's {len(picked)}: found | score | kvpress 0.5.5 on them: "
             "found | score | MB |", "|" + " --- |" * 13]
    for p, ratio in _groups(context["rows"]):
        lines.append(f"| {p} | {ratio if ratio is not None else '-'} | {cell(prompt, p, ratio)} | "
                     f"{cell(context, p, ratio, mb=True)} | {cell(context, p, ratio, picked)} | "
                     f"{cell(press, p, ratio, mb=True)} |")
    lines += _tova_all_rows(f"{task}_4096_context_tova_all.json", press, picked, "- | - | - | - | - | ",
                            mb=False, score=True)
    depths = sorted({round(r["depth"], 3) for r in context["rows"]})
    lines += ["", f"{TASK_NAMES.get(task, task)}; {context['rows'][0]['n_tokens']}-token contexts, answer depths "
                  f"{', '.join(map(str, depths))} (kvpress's cases: "
                  f"{', '.join(str(round(x, 3)) for x in sorted(picked)) or 'not run yet'}). Question-aware: the whole "
                  "prompt is compressed with the question protected (`keep_last`); kvpress's protocol: the context "
                  f"is compressed, the question fed after. `{context['command']}`" +
                  (f"; `{prompt['command']}`" if prompt else "") + (f"; kvpress: {len(press['rows'])} runs" if press else "")
                  + "."]
    return "\n".join(lines)


def press_memory() -> str | None:
    """kvpress's cache bytes and in-process peak RSS per press (its first needle)."""
    press = _load("kvpress_4096_all.json") or _load("kvpress_4096.json")
    if press is None:
        return None
    first = min(r["depth"] for r in press["rows"])
    lines = ["| press | ratio | cache MB | peak RSS during decode MB |", "| --- | --- | --- | --- |"]
    for r in press["rows"]:
        if r["depth"] == first:
            lines.append(f"| {r['policy']} | {r['ratio'] if r['ratio'] is not None else '-'} | "
                         f"{r['kv_bytes'] / MB:.1f} | {r['peak_rss_decode_mb']:.0f} |")
    return "\n".join(lines)


def memory(name: str = "memory_4096.json") -> str | None:
    """One fresh process per spec: cache bytes, the decode phase's peak RSS, speed, answer."""
    d = _load(name)
    if d is None:
        return None
    base = next((r for r in d["rows"] if r["spec"] == "none"), None)
    lines = ["| spec | cache MB | peak RSS during decode MB | vs none MB | decode tok/s | prefill s | answer |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in d["rows"]:
        delta = f"{r['peak_rss_decode_mb'] - base['peak_rss_decode_mb']:+.0f}" if base else ""
        lines.append(f"| `{r['spec']}` | {r['kv_bytes'] / MB:.1f} | {r['peak_rss_decode_mb']:.0f} | {delta} | "
                     f"{r['decode_tokens_per_s']:.2f} | {r['prefill_seconds']:.1f} | "
                     f"{'right' if r['correct'] else 'wrong'} |")
    commands = " and ".join(f"`{c}`" for c in d.get("commands", [d["command"]]))
    lines += ["", f"{commands} ({d.get('model', 'smollm2-135m')}, one process per row)."]
    return "\n".join(lines)


def batch() -> str | None:
    d = _load("batch.json")
    if d is None:
        return None
    lines = ["| spec | prompts (tokens) | same tokens as alone | same kept tokens as alone |", "| --- | --- | --- | --- |"]
    for r in d["rows"]:
        lines.append(f"| `{r['spec']}` | {', '.join(map(str, r.get('lengths', d.get('lengths', [])))) or '-'} | "
                     f"{sum(r['same_tokens'])}/{len(r['same_tokens'])} | "
                     f"{sum(r['same_kept_tokens'])}/{len(r['same_kept_tokens'])} |")
    return "\n".join(lines)


def select_speed(folder: str = "kv_select") -> str | None:
    """`attnlab bench --kv` rows: selection policies vs full attention per context length."""
    path = HERE / "results" / folder / "bench.json"
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    if not d.get("kv_rows"):
        return None
    lines = ["| context | kv | cache MB | prefill + compression s | x none | decode tok/s | x none | "
             "decode peak RSS MB | tokens = none's | needles found |", "|" + " --- |" * 10]
    needles = d.get("kv_needles", {})
    for r in d["kv_rows"]:
        n = needles.get(r["kv"])
        found = f"{sum(c['correct'] for c in n['cases'])}/{n['n']}" if n else "-"
        lines.append(f"| {r['length']} | `{r['kv']}` | {r['cache_mb']:.1f} | {r['prefill_s']:.1f} | "
                     f"{r['prefill_overhead']:.2f} | {r['decode_tok_s']:.2f} | {r['decode_speedup']:.2f} | "
                     f"{r['peak_rss_decode_mb']:.0f} | {100 * r['agreement']:.0f}% | {found} |")
    cfg = d["config"]
    lines += ["", f"{cfg['model']}, corpus {cfg['corpus']}, {cfg['kv_new_tokens']} generated tokens per row, "
                  f"{cfg['threads'] or 'default'} threads, one fresh process per row; needles: {cfg['needles']} "
                  f"cases at {', '.join(map(str, cfg['needle_lengths']))} tokens."]
    return "\n".join(lines)


def tables() -> dict[str, str]:
    """docs/generated file name -> markdown, for the result files that exist."""
    out = {"kv_needles_smollm2.md": needles("needles_4096.json"),
           "kv_needles_smollm2_context.md": needles("needles_4096_context.json"),
           "kv_needles_gemma3.md": needles("needles_gemma3_8192.json"),
           "kv_side_by_side.md": side_by_side(), "kv_press_memory.md": press_memory(),
           "kv_memory.md": memory("memory_4096.json"), "kv_batch.md": batch(),
           "kv_select_speed.md": select_speed(),
           "kv_multikey.md": task_side_by_side("multikey"), "kv_vt.md": task_side_by_side("vt")}
    return {k: v + "\n" for k, v in out.items() if v is not None}


if __name__ == "__main__":
    for name, text in tables().items():
        print(f"## {name}\n\n{text}")
