"""SmolLM2-135M prefill sharded over torchrun ranks (issue 16, experiments 1 and 2).

    OMP_NUM_THREADS=1 torchrun --nproc-per-node N benchmarks/distributed_prefill.py \
        --tokens 8192 --layout striped

Every rank loads the model (`attnlab.load()`), takes the same Hamlet tokens and calls
`attnlab.distributed.forward`, which returns on rank 0 the logits of every 16th position
(the full [T, 49152] logits would be 3.2 GB at 16384 tokens). Measured per rank: wall time
of the forward, peak RSS during it (VmHWM reset after loading), the model's RSS before
it, bytes the attention ring sent, attention compute seconds and the visible
query-key pairs it computed (the causal work, for the load balance). Rank 0 writes
benchmarks/results/distributed/prefill_<T>_<layout>_w<N>.json. With one rank it also
saves the sampled logits as the reference (/tmp) and compares them with the stock
model's own sdpa attention; with N > 1 it reports max |diff| against that 1-rank file.
The machine has 2 cores: beyond 2 ranks, wall time measures correctness and memory,
not speed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

OUT = Path(__file__).parent / "results" / "distributed"


def _tokens(tok, n: int) -> torch.Tensor:
    from attnlab.bench.corpora import shakespeare

    ids = tok(shakespeare("hamlet") + "\n" + shakespeare("macbeth"), add_special_tokens=False)["input_ids"]
    if len(ids) < n:
        raise SystemExit(f"the corpus has {len(ids)} tokens, fewer than {n}")
    return torch.tensor([ids[:n]])


def main() -> None:
    import torch.distributed as dist

    import attnlab
    import attnlab.distributed as ad
    from attnlab.bench.measure import peak_rss_mb, reset_peak_rss, rss_mb
    from attnlab.distributed.api import check_model
    from attnlab.distributed.comm import ensure_group, tensor_hash

    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--layout", default="striped")
    ap.add_argument("--every", type=int, default=16, help="logits of every k-th position are compared")
    ap.add_argument("--block-size", type=int, default=512, help="query chunk of the ring kernel")
    ap.add_argument("--key-block", type=int, default=1024, help="key chunk of the ring kernel")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rank, world = ensure_group(timeout=1800)
    model, tok = attnlab.load()
    ids = _tokens(tok, args.tokens)
    keep = torch.arange(0, args.tokens, args.every)
    ad.forward(model, ids[:, :64 * world], args.layout, timeout=1800)  # warm-up; the model hash is agreed here
    model_rss = rss_mb()
    reset_peak_rss()
    report: dict = {}
    dist.barrier()
    t0 = time.perf_counter()
    logits = ad.forward(model, ids, args.layout, positions=keep, block_size=args.block_size,
                        key_block=args.key_block, timeout=1800, report=report)
    report.update(wall_seconds=time.perf_counter() - t0, peak_rss_mb=peak_rss_mb(), model_rss_mb=model_rss)
    reports = [None] * world
    dist.all_gather_object(reports, report)
    if rank == 0:
        result = {"tokens": args.tokens, "layout": args.layout, "world": world, "threads": torch.get_num_threads(),
                  "block_size": args.block_size, "key_block": args.key_block, "commit": _commit(),
                  "model_hash": check_model(model, rank, world), "data_hash": tensor_hash(ids),
                  "positions_compared": keep.numel(), "ranks": reports, **_compare(model, ids, keep, logits, args)}
        OUT.mkdir(parents=True, exist_ok=True)
        chunks = "" if (args.block_size, args.key_block) == (512, 1024) else f"_b{args.block_size}x{args.key_block}"
        path = OUT / f"prefill_{args.tokens}_{args.layout}_w{world}{chunks}.json"
        path.write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
    dist.destroy_process_group()


def _commit() -> str:
    import subprocess

    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    return out.stdout.strip()


def _compare(model, ids, keep, logits, args) -> dict:
    """1 rank: save the reference, compare with stock sdpa; N ranks: compare with the reference."""
    import torch.distributed as dist

    ref_path = Path(f"/tmp/attnlab_ring_ref_{args.tokens}{'' if args.every == 16 else f'_every{args.every}'}.pt")
    if dist.get_world_size() > 1:
        if not ref_path.exists():
            return {"max_abs_diff_vs_1_rank": None, "note": f"no 1-rank reference at {ref_path}"}
        ref = torch.load(ref_path)
        return {"max_abs_diff_vs_1_rank": float((logits - ref).abs().max()),
                "argmax_agreement_vs_1_rank": float((logits.argmax(-1) == ref.argmax(-1)).float().mean())}
    torch.save(logits, ref_path)
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state[:, keep]  # stock sdpa, one process
        stock = model.lm_head(hidden)
    return {"max_abs_diff_vs_stock_sdpa": float((logits - stock).abs().max()),
            "logit_scale": float(stock.abs().max())}


if __name__ == "__main__":
    main()
