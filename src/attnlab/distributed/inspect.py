"""`attnlab inspect` under torchrun: the head statistics sharded over the ranks.

    torchrun --nproc-per-node N $(which attnlab) inspect --text long.txt

Every rank loads the model and the text and computes its share of the statistics
(`distributed.stats.head_stats`); rank 0 then runs the rest of inspect (probes, head
kinds, heads.csv / heads.json, report.html) and prints; the other ranks print nothing.
"""

from __future__ import annotations

import os


def launched() -> bool:
    """Whether this process is one of several started by torchrun (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def inspect_model(model_name, out_dir, text=None, max_tokens=None, probes: bool = True,
                  command: str = "attnlab inspect", progress=None, layout: str = "striped") -> dict | None:
    """`observe.inspect.inspect_model` with sharded statistics: its summary on rank 0, None elsewhere."""
    from ..observe.inspect import inspect_model as inspect_one, resolve_text
    from .comm import ensure_group
    from .stats import head_stats

    rank, world = ensure_group()

    def sharded(model, tokenizer, text, max_tokens=None, truncate=False):
        return head_stats(model, tokenizer, text, layout, max_tokens=max_tokens, truncate=truncate)

    if rank == 0:
        data = inspect_one(model_name, out_dir, text=text, max_tokens=max_tokens, probes=probes,
                           command=f"torchrun --nproc-per-node {world} {command}", progress=progress,
                           head_stats=sharded)
        data["ranks"] = world
        return data
    from ..models import load

    model, tokenizer = load(model_name)
    text, truncate = resolve_text(model, tokenizer, text, max_tokens)
    sharded(model, tokenizer, text, max_tokens=max_tokens, truncate=truncate)
    return None
