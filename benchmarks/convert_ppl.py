"""Held-out perplexity of SmolLM2-135M: teacher vs linear / hybrid maps after attention transfer.

Every converted variant is trained on the same token budget (the same sequences, in the
same order) and evaluated on the same held-out text (Persuasion + Macbeth, never trained
on). recovery = teacher ppl / converted ppl. The hedgehog + window run also records the
perplexity-vs-transfer-tokens curve (on the first `--curve-tokens` evaluation tokens).
Runs with torch.set_num_threads(1) (a shared 2-core machine).

    python3 benchmarks/convert_ppl.py --tokens 16384 --eval-tokens 4096
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "convert"
VARIANTS = [("hedgehog", 64), ("hedgehog", 0), ("elu", 64), ("performer", 64), ("elu", 0), ("performer", 0)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--eval-tokens", type=int, default=4096)
    ap.add_argument("--curve-tokens", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--maps-dir", default="/tmp/attnlab-convert")
    ap.add_argument("--out", default=str(RESULTS / "ppl.json"))
    ap.add_argument("--variants", default=",".join(f"{k}:{w}" for k, w in VARIANTS),
                    help="feature_map:window,... (default: all six)")
    ap.add_argument("--teacher-ppl", type=float, default=None,
                    help="reuse a teacher perplexity measured on the same eval tokens (skips the baselines)")
    args = ap.parse_args()
    variants = [(v.split(":")[0], int(v.split(":")[1])) for v in args.variants.split(",")]
    torch.set_num_threads(1)
    import attnlab
    from attnlab.convert import eval_ids, evaluate, save, transfer

    model, tok = attnlab.load()
    ids = eval_ids(tok, args.eval_tokens, 512)
    res = {"model": "SmolLM2-135M-Instruct", "threads": 1, "train_tokens": args.tokens, "seq_len": args.seq_len,
           "eval_tokens": int(ids.numel()), "lr": args.lr, "runs": []}

    def dump():
        Path(args.out).write_text(json.dumps(res, indent=2))

    if args.teacher_ppl is None:
        t0 = time.perf_counter()
        res["teacher_ppl"] = evaluate(model, ids)
        res["teacher_eval_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        res["window_only_ppl"] = evaluate(model, ids, "streaming", sinks=0, window=64)
        res["window_only_eval_seconds"] = time.perf_counter() - t0
    else:
        res["teacher_ppl"] = args.teacher_ppl
    dump()
    for kind, window in variants:
        curve = []
        kernel = "hybrid" if window else "linear"

        def on_ckpt(step, n, maps):
            curve.append({"tokens": n, "ppl": evaluate(model, ids[: args.curve_tokens // 512], kernel, maps=maps)})

        cb = on_ckpt if (kind, window) == ("hedgehog", 64) else None
        t0 = time.perf_counter()
        maps = transfer(model, tok, kind, window, tokens=args.tokens, seq_len=args.seq_len, lr=args.lr,
                        checkpoint_every=16, callback=cb, progress=False)
        seconds = time.perf_counter() - t0
        ppl = evaluate(model, ids, kernel, maps=maps)
        hist = maps.meta["history"]
        row = {"feature_map": kind, "window": window, "kernel": kernel, "ppl": ppl,
               "recovery": res["teacher_ppl"] / ppl, "transfer_seconds": seconds,
               "trained_steps": len(hist), "mse_first": hist[0]["loss"] if hist else None,
               "mse_last": hist[-1]["loss"] if hist else None,
               "trainable_params": maps.meta.get("trainable_params"),
               "curve": curve}
        save(maps, Path(args.maps_dir) / f"{kind}-w{window}", model, results={"ppl": ppl, "teacher_ppl": res["teacher_ppl"]})
        res["runs"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
        dump()


if __name__ == "__main__":
    main()
