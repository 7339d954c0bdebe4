"""Needle retrieval from real text under every KV policy and ratio, one prefill per needle.

    python3 benchmarks/kv_needles.py --n-tokens 4096 --needles 5 \
        --out benchmarks/results/kv/needles_4096.json

SmolLM2-135M-Instruct (attnlab.load(); `--model gemma3-270m` for Gemma3-270M, whose
sliding-window layers keep their own bounded cache and only the global layers are
compressed), torch.set_num_threads(1). Each needle (Hamlet
haystack, `attnlab.bench.needles`) is prefilled once (`kv.replay.capture`); every policy x
ratio builds its compressed cache from that prefill (exactly what attach(kv=...) computes)
and decodes greedily. The question (the last prompt tokens) is protected: keep_last = its
token count, as kvpress's pipeline keeps its `question`. Per run: correct, cache bytes held,
decode tokens/s, peak RSS during decode (VmHWM reset before decoding), build seconds
(scoring + compression, the prefill overhead).

Tasks (`--task`, `attnlab.bench.needles`): `needle` (one needle), `multikey` (four needles
with different names, one asked for: RULER's multi-key NIAH) and `vt` (variable tracking: a
chain of VAR assignments, the answer is every variable holding the value; `score` = the
fraction of chain names generated, `correct` = all of them).

Two protocols (`--protocol`):
  prompt   (default) the whole prompt, question included, is prefilled and compressed;
           the question tokens are protected (keep_last) and, for snapkv / adaptive, are
           the observation window: question-aware compression.
  context  kvpress's pipeline: only the context (the prompt without the question) is
           prefilled and compressed (keep_last = 0); the question is then fed through the
           compressed cache as one multi-token step under attach(kv=...), uncompressed,
           and decoding follows: question-agnostic compression, the same token ids and
           protocol as benchmarks/kv_kvpress_run.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

NEW_TOKENS = {"needle": 8, "multikey": 8, "vt": 16}  # vt: "A, VAR B, VAR C" needs more tokens
POLICIES = ("streaming", "snapkv", "h2o", "tova", "knorm", "random", "adaptive")
RATIOS = (0.25, 0.5, 0.75, 0.875)


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cases(tok, n_tokens: int, needles: int, task: str = "needle"):
    from attnlab.bench.corpora import shakespeare
    from attnlab.bench.needles import make_cases

    depths = [(i + 0.5) / needles for i in range(needles)]
    options = {"multikey": {"keys": 4}, "vt": {"hops": 1}}.get(task, {})
    return make_cases(tok, shakespeare("hamlet"), [n_tokens], depths, seed=14, task=task, **options)


def feed(model, cache, question, spec):
    """The question [1, q] through the compressed cache under attach(kv=spec): the next token."""
    import torch

    import attnlab
    from attnlab.models import cache_kwarg

    with torch.no_grad(), attnlab.attach(model, kernel="sdpa", kv=spec):
        out = model(input_ids=question, use_cache=True, **{cache_kwarg(model): cache})
    return out.logits[:, -1:].argmax(-1)


def run_case(model, tok, case, policies, ratios, new_tokens: int, progress, task,
             protocol: str = "prompt") -> list[dict]:
    import torch

    from attnlab.bench.needles import answer_score, is_correct
    from attnlab.kv import replay

    question = case.question
    keep_last = len(tok(question, add_special_tokens=False)["input_ids"])
    ids = tok(case.prompt, return_tensors="pt")["input_ids"]
    if protocol == "context":  # the same token ids as kvpress's run: context, then the question
        ids, question_ids = ids[:, :-keep_last], ids[:, -keep_last:]
        keep_last = 0
    pre = replay.capture(model, ids)
    rows, memo = [], {}  # memo: a scorer's scores serve all its ratios (build_seconds: first ratio pays)
    def spec_of(p, r):  # "tova:heads=all" carries its own parameters
        base = "adaptive:policy=snapkv" if p == "adaptive" else p
        return f"{base}{',' if ':' in base else ':'}ratio={r}" + (f",keep_last={keep_last}" if keep_last else "")

    specs = [("none", None, "none")] + [(p, r, spec_of(p, r)) for p in policies for r in ratios]
    for policy, ratio, spec in specs:
        start = time.perf_counter()
        cache = replay.build_cache(model, pre, spec, memo)
        build = time.perf_counter() - start
        reset_peak_rss()
        first = pre.next_token if protocol == "prompt" else feed(model, cache, question_ids, spec)
        tokens, stats = replay.greedy(model, cache, first, new_tokens, spec)
        text = tok.decode(tokens[0])
        rows.append(dict(policy=policy, ratio=ratio, spec=spec, protocol=protocol, task=case.task,
                         depth=case.depth, n_tokens=int(ids.shape[1]), answer=case.answer, generated=text,
                         correct=is_correct(case, text), score=answer_score(case.answer, text),
                         kv_bytes=stats["kv_bytes"], kv_bytes_left_alone=stats["kv_bytes_left_alone"],
                         decode_tokens_per_s=stats["tokens_per_s"],
                         peak_rss_decode_mb=peak_rss_mb(), build_seconds=build, prefill_seconds=pre.seconds))
        del cache
        progress.advance(task)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-tokens", type=int, default=4096)
    ap.add_argument("--needles", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=None, help="default: 8 (needle, multikey), 16 (vt)")
    ap.add_argument("--task", choices=tuple(NEW_TOKENS), default="needle")
    ap.add_argument("--policies", default=",".join(POLICIES), help="';'-separated if a policy has parameters")
    ap.add_argument("--ratios", default=",".join(map(str, RATIOS)))
    ap.add_argument("--out", default="benchmarks/results/kv/needles_4096.json")
    ap.add_argument("--protocol", choices=("prompt", "context"), default="prompt",
                    help="prompt: compress the whole prompt (question protected); context: kvpress's protocol")
    ap.add_argument("--model", default=None, help="embedded name, folder or .gguf (default smollm2-135m)")
    ap.add_argument("--pick", default=None, help="only these needles (indices, e.g. 0,2,4)")
    args = ap.parse_args()
    import torch
    from rich.progress import Progress

    import attnlab

    torch.set_num_threads(1)
    model, tok = attnlab.load(args.model)
    policies = args.policies.split(";" if ";" in args.policies or ":" in args.policies else ",")
    ratios = [float(r) for r in args.ratios.split(",")]
    todo = cases(tok, args.n_tokens, args.needles, args.task)
    args.new_tokens = args.new_tokens or NEW_TOKENS[args.task]
    if args.pick:
        todo = [todo[int(i)] for i in args.pick.split(",")]
    rows = []
    with Progress() as progress:
        task = progress.add_task("needles x policies", total=len(todo) * (1 + len(policies) * len(ratios)))
        for case in todo:
            rows += run_case(model, tok, case, policies, ratios, args.new_tokens, progress, task, args.protocol)
            out = dict(model=model.config._name_or_path, model_name=args.model or "smollm2-135m", threads=1, machine=platform.processor() or platform.machine(),
                       torch=torch.__version__, command="python3 benchmarks/kv_needles.py " + " ".join(
                           f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None), rows=rows)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(out, indent=1))
    print(summary(rows))


def summary(rows) -> str:
    """One line per (policy, ratio): accuracy, mean cache MB, decode tok/s, peak RSS, build s."""
    from collections import defaultdict

    groups = defaultdict(list)
    for r in rows:
        groups[(r["policy"], r["ratio"])].append(r)
    lines = [f"{'policy':<10} {'ratio':>5} {'acc':>5} {'score':>5} {'cacheMB':>8} {'tok/s':>6} {'rssMB':>7} "
             f"{'build_s':>7}"]
    for (p, ratio), rs in groups.items():
        n = len(rs)
        lines.append(f"{p:<10} {ratio if ratio is not None else 0:>5} {sum(r['correct'] for r in rs) / n:>5.2f} "
                     f"{sum(r.get('score', r['correct']) for r in rs) / n:>5.2f} "
                     f"{sum(r['kv_bytes'] for r in rs) / n / 2**20:>8.1f} "
                     f"{sum(r['decode_tokens_per_s'] for r in rs) / n:>6.1f} "
                     f"{max(r['peak_rss_decode_mb'] for r in rs):>7.0f} {sum(r['build_seconds'] for r in rs) / n:>7.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
