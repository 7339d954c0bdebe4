"""Which BIG-bench multiple-choice tasks is SmolLM2-135M above chance on? (zero-shot, sdpa)

Scores the first N items of each candidate task by choice log-likelihood (sum and
per-token mean normalisation), prints accuracy with a 95% bootstrap CI and chance.
Run: flock /tmp/attnlab-heavy.lock python benchmarks/steer_task_screen.py [--n 80]
"""

from __future__ import annotations

import argparse
import time

CANDIDATES = ("intent_recognition emoji_movie social_iqa hindu_knowledge sports_understanding "
              "movie_recommendation anachronisms general_knowledge misconceptions implicatures").split()


def main() -> None:
    import attnlab
    from attnlab.evals.bootstrap import accuracy_ci
    from attnlab.evals.scoring import score
    from attnlab.evals.tasks import chance, load_task

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--tasks", default=",".join(CANDIDATES))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 is faster on a shared, busy CPU)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model, tok = attnlab.load()
    print(f"{'task':28s} {'n':>4s} {'chance':>6s} {'acc(sum) [95% CI]':>22s} {'acc(mean) [95% CI]':>22s}  s")
    for task in args.tasks.split(","):
        items = load_task(task, limit=args.n)
        t = time.perf_counter()
        sc = score(model, tok, items, kernel="sdpa")
        row = [accuracy_ci(sc.correct(items, norm)) for norm in ("sum", "mean")]
        cells = " ".join(f"{r['acc']:.3f} [{r['lo']:.3f},{r['hi']:.3f}]".rjust(22) for r in row)
        print(f"{task:28s} {len(items):4d} {chance(items):6.3f} {cells}  {time.perf_counter() - t:.0f}", flush=True)


if __name__ == "__main__":
    main()
