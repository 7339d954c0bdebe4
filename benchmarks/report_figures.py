"""Report size and generation time on SmolLM2 at 1024 and 8192 tokens of Hamlet (docs figures).

Heavy (the 8192-token inspect pass): run under the shared lock,
    flock /tmp/attnlab-heavy.lock python benchmarks/report_figures.py [--out DIR] [--lengths 1024 8192]
For each length it runs `attnlab inspect --text FILE --out DIR/N --png` once (statistics, probes
and report, timed as a whole), then `write_report` alone `--repeats` times on the heads.json that
inspect wrote (median), and prints the report's size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path


def inspect_once(text_file: Path, out: Path, n: int, probes: bool) -> float:
    """Wall seconds of one `attnlab inspect` run (a fresh process, model load included)."""
    cmd = [shutil.which("attnlab") or "attnlab", "inspect", "--text", str(text_file), "--max-tokens", str(n),
           "--out", str(out), "--png", "--format", "json"] + ([] if probes else ["--no-probes"])
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"inspect failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/attnlab-report-figures")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 8192])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-probes", action="store_true", help="pass --no-probes to inspect (faster)")
    args = parser.parse_args()

    import attnlab
    from attnlab.bench.corpora import passage
    from attnlab.report.write import write_report

    model, tok = attnlab.load()
    rows = []
    for n in args.lengths:
        out = Path(args.out) / str(n)
        out.mkdir(parents=True, exist_ok=True)
        text = passage(tok, n + 16)  # a little more than n: --max-tokens cuts it to exactly n tokens
        text_file = out / "input.txt"
        text_file.write_text(text, encoding="utf-8")
        total = inspect_once(text_file, out, n, not args.no_probes)
        times, info = [], None
        for _ in range(args.repeats):
            info = write_report(out, model, tok, text, max_tokens=n, truncate=True)
            times.append(info["seconds"])
        heads = json.loads((out / "heads.json").read_text())
        rows.append({"tokens": heads["n_tokens"], "inspect_total_s": round(total, 1),
                     "report_s_median": round(statistics.median(times), 2), "report_s_all": times,
                     "report_bytes": info["bytes"], "report_kib": round(info["bytes"] / 1024, 1),
                     "pngs": len(list(out.glob("*.png"))), "token_view_heads": info["heads"]})
        print(json.dumps(rows[-1]), flush=True)
    probes = "without probes" if args.no_probes else "with probes"
    print(f"\n| tokens | report size | report generation (median of {args.repeats}) | whole `attnlab inspect` ({probes}) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['tokens']} | {r['report_kib']} KiB | {r['report_s_median']} s | {r['inspect_total_s']} s |")


if __name__ == "__main__":
    main()
