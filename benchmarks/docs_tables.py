"""The documentation's result tables and plots, from benchmarks/results/* into docs/generated/ and docs/figures/.

Every table of measured figures in docs/ is included from a file this script writes, so a
number in the docs is the number in its run's result file. Run after a benchmark:

    python3 benchmarks/docs_tables.py          # (re)write docs/generated/*.md
    python3 benchmarks/docs_tables.py --check  # exit 1 if a generated file is stale; write nothing
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
OUT = ROOT / "docs" / "generated"
FIGURES = ROOT / "docs" / "figures"  # plots copied from the runs (byte for byte)
sys.path.insert(0, str(HERE))


def _source(path: Path) -> str:
    return f"\n\nGenerated from `{path.relative_to(ROOT)}` by `python3 benchmarks/docs_tables.py`.\n"


def arch_matrix() -> str:
    import arch_matrix as am

    return am.table(json.loads(am.RESULTS.read_text())) + "\n"


def sparse(path: Path) -> str:
    """A sparse-prefill benchmark run (bench.json written by `attnlab bench`)."""
    import sparse_prefill

    return sparse_prefill.markdown(json.loads(path.read_text())) + _source(path)


def dispatch_overhead(path: Path) -> str:
    """attach(sdpa) with no hooks vs the stock SDPA model: medians and the per-call cost."""
    data = json.loads(path.read_text())
    o, c = data["overhead"], data["per_call"]
    stock, attach = o["wall_s"]["stock"], o["wall_s"]["attach"]
    pairs = statistics.median(a / s for a, s in zip(attach, stock))
    lines = ["| condition | median s | x stock | runs (s) |", "|---|---|---|---|"]
    for name, runs in (("stock SDPA model", stock), ("attach(kernel=\"sdpa\")", attach)):
        lines.append(f"| {name} | {statistics.median(runs):.2f} | {statistics.median(runs) / statistics.median(stock):.2f}x"
                     f" | {', '.join(f'{r:.2f}' for r in runs)} |")
    lines += ["", f"{o['tokens']} tokens, {o['repeats']} alternating forwards; median of per-pair ratios {pairs:.2f}x; "
              f"the dispatcher adds {c['added_us_per_call']:.1f} us per attention call "
              f"({c['attnlab_us_per_call']:.1f} vs {c['sdpa_us_per_call']:.1f} us on tiny tensors)."]
    return "\n".join(lines) + _source(path)


def steer_overhead(path: Path) -> str:
    data = json.loads(path.read_text())
    lines = ["| condition | median s | x eager (no modifier) | x sdpa (no modifier) |", "|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['condition']} | {r['median_s']:.1f} | {r['vs_eager']:.2f} | {r['vs_sdpa']:.2f} |")
    p = data["parity"]
    lines += ["", f"{data['tokens']} tokens, median of {data['repeats']}; parity: eager vs sdpa max |diff| "
              f"{p['eager_vs_sdpa_max_abs']:.2g}, sink_scale(1) vs eager {p['sink_scale_1_vs_eager_max_abs']:.2g}."]
    return "\n".join(lines) + _source(path)


def steer_retrieval_heads(path: Path) -> str:
    """Needle accuracy with the top-k retrieval heads masked vs k random heads (per draw)."""
    data = json.loads(path.read_text())
    by_k: dict[int, dict] = {}
    for r in data["rows"]:
        acc = sum(r["correct"]) / len(r["correct"])
        slot = by_k.setdefault(r["k"], {"top": None, "random": []})
        if r["condition"] == "random":
            slot["random"].append(acc)
        else:
            slot["top"] = acc
    lines = ["| k | top-k retrieval heads masked | k random heads masked (per draw) |", "|---|---|---|"]
    for k, slot in sorted(by_k.items()):
        rand = ", ".join(f"{a:.2f}" for a in slot["random"])
        lines.append(f"| {k} | {slot['top']:.2f} | {rand} |")
    lines += ["", f"{data['cases']} needle cases at {data['length']} tokens."]
    return "\n".join(lines) + _source(path)


def head_stats(path: Path) -> str:
    """Streamed head statistics vs a plain SDPA forward (benchmarks/head_stats.py --out)."""
    import head_stats as hs

    doc = json.loads(path.read_text())
    return (hs.report(doc["runs"], doc["tokens"]) + f"\n\n`{doc['command']}`, started {doc['started']} "
            f"(load average {doc['load_average_at_start']:.2f}); statistics within "
            f"{doc['parity_max_diff']:.1e} of the eager-map reference at 512 tokens." + _source(path))


def tune() -> dict[str, str]:
    """Head-level tuning: the 3-seed grid, Gemma3, data efficiency, heads vs the taxonomy (tune_table.py)."""
    import tune_table as tt

    src = RESULTS / "tune"
    out = {f"tune_{tag}.md": tt.table(tag) + _source(src / f"{tag}_*.json") for tag in ("grid", "gemma3")}
    out["tune_data_hyperbaton.md"] = tt.data_table("hyperbaton") + _source(src / "data*_hyperbaton_*.json")
    out["tune_heads.md"] = tt.heads_table() + _source(src / "heads_overlap.json")
    return out


def kv() -> dict[str, str]:
    """KV compression: needles per policy x ratio, the kvpress side by side, memory (kv_report.py)."""
    import kv_report

    return {name: text + f"\nGenerated from `benchmarks/results/kv/` by `python3 benchmarks/docs_tables.py`.\n"
            for name, text in kv_report.tables().items()}


def convert() -> dict[str, str]:
    """Linear / hybrid conversion: perplexity, decode, needles (convert_report.py)."""
    import convert_report

    return {name: text + "\nGenerated from `benchmarks/results/convert/` by `python3 benchmarks/docs_tables.py`.\n"
            for name, text in convert_report.tables().items()}


def tables() -> dict[str, str]:
    """File name in docs/generated -> its content."""
    out = {"arch_matrix.md": arch_matrix()}
    for bench in sorted(RESULTS.glob("*/bench.json")):
        out[f"{bench.parent.name}.md"] = sparse(bench)
    for path in sorted(RESULTS.glob("dispatch_overhead_*.json")):
        out[f"{path.stem}.md"] = dispatch_overhead(path)
    for path in sorted(RESULTS.glob("head_stats_*.json")):
        out[f"{path.stem}.md"] = head_stats(path)
    out["steer_overhead.md"] = steer_overhead(RESULTS / "steer_overhead.json")
    out["steer_retrieval_heads.md"] = steer_retrieval_heads(RESULTS / "steer_retrieval_heads.json")
    out.update(tune())
    out.update(kv())
    out.update(convert())
    return out


def figures() -> dict[str, bytes]:
    """File name in docs/figures -> the bytes of the run's plot it copies."""
    out = {p.name: p.read_bytes() for p in sorted(RESULTS.glob("*.png"))}
    out.update({f"{p.parent.name}_{p.name}": p.read_bytes() for p in sorted(RESULTS.glob("*/*.png"))})
    return out


def _sync(folder: Path, files: dict, check: bool) -> list[str]:
    """Names in `folder` whose content differs from `files` (written unless `check`)."""
    folder.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, content in files.items():
        path = folder / name
        old = path.read_bytes() if path.exists() else None
        new = content.encode() if isinstance(content, str) else content
        if old != new:
            stale.append(name)
            if not check:
                path.write_bytes(new)
    return stale


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale; write nothing")
    args = ap.parse_args()
    made_tables, made_figures = tables(), figures()
    made = {**made_tables, **made_figures}
    stale = _sync(OUT, made_tables, args.check) + _sync(FIGURES, made_figures, args.check)
    if args.check and stale:
        print(f"stale in docs/generated or docs/figures: {', '.join(stale)}; run python3 benchmarks/docs_tables.py")
        return 1
    print(f"{'checked' if args.check else 'wrote'} {len(made)} files in docs/generated and docs/figures "
          f"({len(stale)} {'stale' if args.check else 'changed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
