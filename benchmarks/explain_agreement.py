"""How far each explanation method agrees with leave-one-out ablation, on real-text cases.

    flock /tmp/attnlab-heavy.lock python benchmarks/explain_agreement.py --cases 30

Cases (attnlab.explain.cases): 4 Shakespeare passages of ~100 tokens from random plays,
half with a planted fact (needle), half asking to continue a real verse line; the answer
sits in one known (gold) passage. Per case and method: Spearman rank correlation of the
passage scores with the ablation importances, whether the top passage is the gold one,
and the seconds taken (attention methods include their shared capture forward;
ablation = one forward per passage + 1). Printed: medians / means over cases.
Traceback variants (aggregation, sink handling) are scored from one extra capture.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def _variants(model, case_ctx, spans_all, sink: int = 4) -> dict:
    from attnlab.explain.capture import capture
    from attnlab.explain.traceback import aggregate, token_scores

    calls = capture(model, case_ctx.tensor())
    scores = token_scores(calls, case_ctx.answer_targets())
    no_sink = [(max(s, sink), max(e, sink)) for s, e in spans_all]
    out = {f"traceback[{agg}]": aggregate(scores, no_sink, agg) for agg in ("topk", "sum", "mean")}
    out["traceback[topk,sink kept]"] = aggregate(scores, spans_all, "topk")
    contrast = token_scores(calls, case_ctx.answer_targets(), baseline_rows=case_ctx.question_rows())
    out["traceback[topk,contrast]"] = aggregate(contrast, no_sink, "topk")
    out["traceback[sum,contrast]"] = aggregate(contrast, no_sink, "sum")
    last = token_scores(calls, case_ctx.answer_targets(), layers="last")
    out["traceback[topk,last layer]"] = aggregate(last, no_sink, "topk")
    return out


def run_case(model, tok, case) -> dict:
    from attnlab.explain.context import build
    from attnlab.explain.run import _ranking, explain_context, spearman

    data = explain_context(model, tok, case.passages, case.question, case.answer)
    importance = data["ablation"]["scores"]
    row = {"kind": case.kind, "gold": case.gold, "n_tokens": data["n_tokens"],
           "ablation_top1_gold": data["ablation"]["ranking"][0] == case.gold,
           "ablation_seconds": data["ablation"]["seconds"], "methods": {}}
    for name, entry in data["methods"].items():
        row["methods"][name] = {"rho": entry["spearman_vs_ablation"], "top1": entry["ranking"][0] == case.gold,
                                "seconds": entry["seconds"]}
    ctx = build(tok, case.passages, case.question, case.answer)
    for name, scores in _variants(model, ctx, ctx.spans()).items():
        row["methods"][name] = {"rho": spearman(scores, importance), "top1": _ranking(scores)[0] == case.gold,
                                "seconds": None}
    return row


def summarize(rows) -> None:
    names = list(rows[0]["methods"])
    abl_s = statistics.median(r["ablation_seconds"] for r in rows)
    print(f"{len(rows)} cases ({sum(r['kind'] == 'needle' for r in rows)} needle, "
          f"{sum(r['kind'] == 'line' for r in rows)} line), median {statistics.median(r['n_tokens'] for r in rows):.0f} tokens")
    print(f"ablation: top-1 = gold passage {sum(r['ablation_top1_gold'] for r in rows)}/{len(rows)}, "
          f"median {abl_s:.2f} s/case")
    print(f"{'method':28} {'median rho':>10} {'mean rho':>9} {'top-1 gold':>10} {'top-1 needle':>12} "
          f"{'top-1 line':>10} {'s/case':>7} {'x ablation':>10}")
    for name in names:
        ms = [r["methods"][name] for r in rows]
        rhos = [m["rho"] for m in ms if m["rho"] is not None]
        secs = [m["seconds"] for m in ms if m["seconds"] is not None]
        by = {k: [m["top1"] for r, m in zip(rows, ms) if r["kind"] == k] for k in ("needle", "line")}
        sec = statistics.median(secs) if secs else None
        print(f"{name:28} {statistics.median(rhos):10.2f} {statistics.mean(rhos):9.2f} "
              f"{sum(m['top1'] for m in ms) / len(ms):10.0%} {sum(by['needle']) / max(1, len(by['needle'])):12.0%} "
              f"{sum(by['line']) / max(1, len(by['line'])):10.0%} "
              + (f"{sec:7.2f} {sec / abl_s:10.2f}" if sec is not None else f"{'-':>7} {'-':>10}"))


def main() -> None:
    import torch

    import attnlab
    from attnlab.explain.cases import make_cases

    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=30)
    ap.add_argument("--passages", type=int, default=4)
    ap.add_argument("--passage-tokens", type=int, default=100)
    ap.add_argument("--jsonl", default="/tmp/explain_agreement.jsonl")
    ap.add_argument("--max-minutes", type=float, default=25.0)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tok = attnlab.load()
    cases = make_cases(tok, args.cases, n_passages=args.passages, n_tokens=args.passage_tokens)
    rows, start = [], time.perf_counter()
    with open(args.jsonl, "w") as fh:
        for i, case in enumerate(cases):
            rows.append(run_case(model, tok, case))
            fh.write(json.dumps(rows[-1]) + "\n")
            fh.flush()
            print(f"case {i + 1}/{len(cases)} done at {time.perf_counter() - start:.0f} s", flush=True)
            if time.perf_counter() - start > args.max_minutes * 60:
                print(f"stopping after {len(rows)} cases: time budget of {args.max_minutes} min reached")
                break
    summarize(rows)


if __name__ == "__main__":
    main()
