"""Needle-in-a-haystack accuracy (attnlab.bench.needles): teacher vs converted SmolLM2-135M.

Cases: a needle sentence at depths 0.1 / 0.5 / 0.9 of a real-text haystack (Persuasion,
held out from the transfer) at each length; greedy completion, exact match on the number.
Variants: the softmax teacher, a plain 64-token sliding window (streaming, sinks=0), and
every saved map directory given (hybrid or linear by its window). One thread.

    python3 benchmarks/convert_needles.py --lengths 512 1024 --maps /tmp/attnlab-convert/hedgehog-w64 ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "convert"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--depths", type=float, nargs="+", default=[0.1, 0.5, 0.9])
    ap.add_argument("--maps", nargs="*", default=[])
    ap.add_argument("--out", default=str(RESULTS / "needles.json"))
    ap.add_argument("--model", default=None, help="embedded name, folder or .gguf (default smollm2-135m)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import attnlab
    from attnlab.bench import corpora
    from attnlab.bench.measure import generate_answer
    from attnlab.bench.needles import is_correct, make_cases
    from attnlab.convert import load

    model, tok = attnlab.load(args.model)
    cases = make_cases(tok, corpora.austen("persuasion"), args.lengths, args.depths, seed=0)
    variants = [("teacher (softmax)", "sdpa", {}), ("window 64 only", "streaming", {"sinks": 0, "window": 64})]
    for path in args.maps:
        maps = load(path, model=model)
        variants.append((f"{maps.kind} w={maps.window}", "hybrid" if maps.window else "linear", {"maps": maps}))
    res = {"model": args.model or "smollm2-135m", "threads": 1, "lengths": args.lengths, "depths": args.depths,
           "cases": len(cases), "variants": []}
    for label, kernel, params in variants:
        rows = []
        with attnlab.attach(model, kernel=kernel, **params):
            for case in cases:
                answer = generate_answer(model, tok, case.prompt, 8)
                rows.append({"n_tokens": case.n_tokens, "depth": case.depth, "answer": case.answer,
                             "generated": answer, "correct": is_correct(case, answer)})
        acc = sum(r["correct"] for r in rows) / len(rows)
        res["variants"].append({"variant": label, "accuracy": acc, "cases": rows})
        print(json.dumps({"variant": label, "accuracy": acc}), flush=True)
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
