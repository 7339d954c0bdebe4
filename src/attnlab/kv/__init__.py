"""KV-cache policies: evict after prefill or while decoding, or select per decode step.

    with attnlab.attach(model, kv="snapkv:ratio=0.5,keep_last=16") as s:
        model.generate(**inputs, max_new_tokens=32)
        s.kv_bytes["total"]          # bytes the compressed cache holds

Modules: `policy` (spec strings), `scorers` (how important each token is), `select`
(budgets, per-head and AdaKV-style choice), `cache` (the compressed cache layer),
`evict` (after prefill), `decode` (decode budget), `selection` (quest, tokenselect,
recycled), `state` (the per-attach glue). Nothing is imported until used.
"""

from __future__ import annotations


def parse(spec):
    """KVPolicy of a spec string (see `attnlab.kv.policy`)."""
    from .policy import parse as _parse

    return _parse(spec)


def make_state(spec):
    """The KVState an attach(kv=spec) runs with."""
    from .state import KVState

    return KVState(parse(spec))


def policy_names() -> list[str]:
    """Every valid policy name."""
    from .scorers import SCORERS
    from .selection import SELECTIONS

    return sorted(["none", "adaptive", *SCORERS, *SELECTIONS])
