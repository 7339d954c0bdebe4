"""Held-out perplexity of SmolLM2-135M (or `--model gemma3-270m`): teacher vs linear / hybrid maps after attention transfer.

Every converted variant is trained on the same token budget (the same sequences, in the
same order) and evaluated on the same held-out text (Persuasion + Macbeth, never trained
on). recovery = teacher ppl / converted ppl. The hedgehog + window run also records the
perplexity-vs-transfer-tokens curve (on the first `--curve-tokens` evaluation tokens).
Runs with torch.set_num_threads(1) (a shared 2-core machine).

    python3 benchmarks/convert_ppl.py --tokens 16384 --eval-tokens 4096
    python3 benchmarks/convert_ppl.py --lora-from /tmp/attnlab-convert/hedgehog-w64 --tokens 16384 \
        --eval-tokens 4096 --teacher-ppl 38.51140471606142 --out benchmarks/results/convert/ppl_lora.json

`--lora-from DIR` skips the transfer: it loads maps that convert_ppl.py saved, checks their
perplexity on the same evaluation tokens, runs LoLCATs' second stage (PEFT LoRA r = 8 on
q/k/v/o, next-token loss under the converted attention, `--tokens` of the same training
text as the transfer) and evaluates the merged model with the same maps.
"""

from __future__ import annotations

import argparse
import json
import sys
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
    ap.add_argument("--eval-seq-len", type=int, default=512,
                    help="evaluation sequence length (Gemma3: > 512 so its global layers see past the window)")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--maps-dir", default="/tmp/attnlab-convert")
    ap.add_argument("--out", default=str(RESULTS / "ppl.json"))
    ap.add_argument("--variants", default=",".join(f"{k}:{w}" for k, w in VARIANTS),
                    help="feature_map:window,... (default: all six)")
    ap.add_argument("--teacher-ppl", type=float, default=None,
                    help="reuse a teacher perplexity measured on the same eval tokens (skips the baselines)")
    ap.add_argument("--lora-from", default=None, help="saved maps: run only the LoRA stage on them")
    ap.add_argument("--lora-lr", type=float, default=1e-4)
    ap.add_argument("--model", default=None, help="embedded name, folder or .gguf (default smollm2-135m); "
                    "a model with sliding-window layers converts its global layers only")
    args = ap.parse_args()
    variants = [(v.split(":")[0], int(v.split(":")[1])) for v in args.variants.split(",")]
    torch.set_num_threads(1)
    import attnlab
    from attnlab.convert import eval_ids, evaluate, save, transfer

    model, tok = attnlab.load(args.model)
    ids = eval_ids(tok, args.eval_tokens, args.eval_seq_len)
    res = {"model": model.config._name_or_path or args.model, "model_name": args.model or "smollm2-135m",
           "command": "python3 benchmarks/convert_ppl.py " + " ".join(sys.argv[1:]), "threads": 1, "train_tokens": args.tokens, "seq_len": args.seq_len,
           "eval_tokens": int(ids.numel()), "eval_seq_len": args.eval_seq_len, "lr": args.lr, "runs": []}

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
    if args.lora_from:
        return lora_row(model, tok, ids, args, res, dump)
    for kind, window in variants:
        curve = []
        kernel = "hybrid" if window else "linear"

        def on_ckpt(step, n, maps):
            curve.append({"tokens": n, "ppl": evaluate(model, ids[: max(1, args.curve_tokens // args.eval_seq_len)], kernel, maps=maps)})

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


def lora_row(model, tok, ids, args, res, dump) -> None:
    """The LoRA stage on saved maps: ppl before (same eval tokens) and after, recovery, cost."""
    from attnlab.convert import evaluate, load, lora_stage

    maps = load(args.lora_from, model=model)
    window = int(maps.meta.get("window") or 0)
    kernel = "hybrid" if window else "linear"
    before = evaluate(model, ids, kernel, maps=maps)
    t0 = time.perf_counter()
    merged = lora_stage(model, tok, maps, tokens=args.tokens, seq_len=args.seq_len, lr=args.lora_lr, progress=False)
    seconds = time.perf_counter() - t0
    after = evaluate(merged, ids, kernel, maps=maps)
    lora = maps.meta["lora"]
    trainable = sum(8 * (m.in_features + m.out_features) for n, m in model.named_modules()
                    if n.split(".")[-1] in ("q_proj", "k_proj", "v_proj", "o_proj") and hasattr(m, "in_features"))
    row = {"feature_map": maps.meta.get("feature_map"), "window": window, "kernel": kernel, "maps": args.lora_from,
           "ppl_before_lora": before, "ppl": after, "recovery_before": res["teacher_ppl"] / before,
           "recovery": res["teacher_ppl"] / after, "lora_seconds": seconds, "lora_tokens": lora["tokens"],
           "lora_r": lora["r"], "lora_lr": lora["lr"], "lora_trainable_params": trainable,
           "nll_first": lora["history"][0]["loss"] if lora["history"] else None,
           "nll_last": lora["history"][-1]["loss"] if lora["history"] else None}
    res["runs"].append(row)
    print(json.dumps(row), flush=True)
    dump()


if __name__ == "__main__":
    main()
