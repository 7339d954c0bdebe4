"""attnlab vs kvpress side by side on the same needles: writes the cases, runs kvpress in its
own venv (benchmarks/kv_kvpress_setup.py creates it), joins both result files into one table.

    python3 benchmarks/kv_kvpress.py --needles 5 --pick 0,2,4 \
        --attnlab benchmarks/results/kv/needles_4096.json --out benchmarks/results/kv/kvpress_4096.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def write_cases(n_tokens: int, needles: int, pick: list[int], path: Path, task: str = "needle") -> None:
    import attnlab
    from kv_needles import NEW_TOKENS, cases

    _, tok = attnlab.load()
    out = []
    for i, case in enumerate(cases(tok, n_tokens, needles, task)):
        if i in pick:
            out.append(dict(ids=tok(case.prompt)["input_ids"], answer=case.answer, depth=case.depth, task=task,
                            new_tokens=NEW_TOKENS[task],
                            keep_last=len(tok(case.question, add_special_tokens=False)["input_ids"])))
    path.write_text(json.dumps(out))


def table(attn_rows, press_rows, depths) -> str:
    """policy x ratio: accuracy and mean cache MB for attnlab and kvpress on the same needles."""
    def stats(rows, p, r):
        rs = [x for x in rows if x["policy"] == p and x["ratio"] == r and round(x["depth"], 6) in depths]
        if not rs:
            return "   -        -   "
        return f"{sum(x['correct'] for x in rs)}/{len(rs)} {sum(x['kv_bytes'] for x in rs) / len(rs) / 2**20:6.1f}MB"
    keys = sorted({(x["policy"], x["ratio"]) for x in press_rows}, key=lambda k: (k[0] != "none", k[0], k[1] or 0))
    lines = [f"{'policy':<10} {'ratio':>5} | {'attnlab acc  cache':>18} | {'kvpress acc  cache':>18}"]
    for p, r in keys:
        lines.append(f"{p:<10} {r or 0:>5} | {stats(attn_rows, p, r):>18} | {stats(press_rows, p, r):>18}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-tokens", type=int, default=4096)
    ap.add_argument("--needles", type=int, default=5)
    ap.add_argument("--pick", default="0,2,4", help="which of the needles kvpress runs (its prefill is not shared)")
    ap.add_argument("--attnlab", default="benchmarks/results/kv/needles_4096.json")
    ap.add_argument("--out", default="benchmarks/results/kv/kvpress_4096.json")
    ap.add_argument("--presses", default="streaming,snapkv,h2o,tova,knorm,random,adaptive")
    ap.add_argument("--ratios", default="0.25,0.5,0.75,0.875")
    ap.add_argument("--skip-run", action="store_true", help="only join existing results")
    ap.add_argument("--task", choices=("needle", "multikey", "vt"), default="needle")
    args = ap.parse_args()
    from attnlab.models import resolve

    pick = [int(i) for i in args.pick.split(",")]
    cases_path = Path(f"/tmp/attnlab_kv_cases_{args.task}.json")
    if not args.skip_run:
        write_cases(args.n_tokens, args.needles, pick, cases_path, args.task)  # then the model is freed
        import gc

        gc.collect()
        py = ROOT / ".venv-kvpress" / "bin" / "python"
        import os

        env = dict(os.environ, HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error",
                   TQDM_DISABLE="1")
        subprocess.run([str(py), str(ROOT / "benchmarks" / "kv_kvpress_run.py"), str(cases_path),
                        str(resolve()), args.out, args.presses, args.ratios], check=True, env=env)
    press_rows = json.loads(Path(args.out).read_text())["rows"]
    attn_rows = json.loads(Path(args.attnlab).read_text())["rows"]
    depths = {round(x["depth"], 6) for x in press_rows}
    print(table(attn_rows, press_rows, depths))


if __name__ == "__main__":
    main()
