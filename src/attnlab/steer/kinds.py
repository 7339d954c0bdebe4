"""Select heads by kind: the `top` heads ranked by the taxonomy score of that kind.

Scores come from `attnlab.observe` (issue "See every head"): retrieval from the Retrieval
Head needle probe, induction / previous-token from the repeated-random-tokens probe,
sink / local from the attention statistics on the default text.
"""

from __future__ import annotations

KIND_SCORES = {
    "retrieval": "retrieval",
    "induction": "induction",
    "previous-token": "prev_token_probe",
    "sink": "sink_mass",
    "local": "local_mass",
}


def kind_scores(model, tokenizer, kind: str):
    """DataFrame[layer, head, score] of every head for `kind` (higher = more of that kind)."""
    if kind not in KIND_SCORES:
        raise ValueError(f"unknown head kind {kind!r}; valid kinds: {', '.join(KIND_SCORES)}")
    column = KIND_SCORES[kind]
    if kind == "retrieval":
        from ..observe.probes import retrieval_scores

        df = retrieval_scores(model, tokenizer)
    elif kind in ("induction", "previous-token"):
        from ..observe.probes import induction_scores

        df = induction_scores(model, tokenizer)
    else:
        from ..observe.heads import head_stats
        from ..observe.kinds import default_text

        df = head_stats(model, tokenizer, default_text(tokenizer))
    return df[["layer", "head"]].assign(score=df[column].astype(float).values)


def top_heads(scores, top: int) -> list[tuple[int, int]]:
    """The `top` (layer, head) pairs with the highest score (ties broken by position)."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    ranked = scores.sort_values(["score", "layer", "head"], ascending=[False, True, True], kind="stable")
    return [(int(l), int(h)) for l, h in zip(ranked["layer"], ranked["head"])][:top]


def kind_heads(model, tokenizer, kind: str, top: int = 10) -> list[tuple[int, int]]:
    """The `top` heads of `kind` in `model`, as (layer, head) pairs."""
    return top_heads(kind_scores(model, tokenizer, kind), top)
