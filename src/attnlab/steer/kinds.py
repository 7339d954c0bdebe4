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
    """DataFrame[stack, layer, head, score] of every head for `kind` (higher = more of that kind).

    The probe kinds (retrieval, induction, previous-token) need a decoder-only causal LM.
    """
    if kind not in KIND_SCORES:
        raise ValueError(f"unknown head kind {kind!r}; valid kinds: {', '.join(KIND_SCORES)}")
    column = KIND_SCORES[kind]
    if kind in ("retrieval", "induction", "previous-token"):
        from ..errors import OptionError
        from ..models import loaded_kind

        if loaded_kind(model) != "causal":
            raise OptionError(f"kind={kind} is scored by a probe that needs a decoder-only causal LM; "
                              f"{type(model).__name__} is an {loaded_kind(model)} model (use kind=sink or kind=local, "
                              "or heads=stack:layer:head)")
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
    stack = df["stack"] if "stack" in df else "decoder"
    return df[["layer", "head"]].assign(stack=stack, score=df[column].astype(float).values)


def top_heads(scores, top: int) -> list[tuple]:
    """The `top` (layer, head) pairs with the highest score (ties broken by position);
    (stack, layer, head) triples when the scores span several stacks. NaN scores (a
    statistic undefined for cross-attention) are never chosen."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    scores = scores[scores["score"].notna()]
    ranked = scores.sort_values(["score", "layer", "head"], ascending=[False, True, True], kind="stable")
    if "stack" in ranked and ranked["stack"].nunique() > 1:
        return [(str(s), int(l), int(h)) for s, l, h in zip(ranked["stack"], ranked["layer"], ranked["head"])][:top]
    return [(int(l), int(h)) for l, h in zip(ranked["layer"], ranked["head"])][:top]


def kind_heads(model, tokenizer, kind: str, top: int = 10) -> list[tuple]:
    """The `top` heads of `kind` in `model`, as (layer, head) pairs ((stack, layer, head) on
    a model with several stacks)."""
    return top_heads(kind_scores(model, tokenizer, kind), top)
