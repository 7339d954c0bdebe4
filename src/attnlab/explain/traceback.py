"""Context traceback (AttnTrace-like): which passages did the answer read?

Token score: the attention that the answer rows pay to each context token, averaged
over heads, over the chosen layers (default all) and over the answer rows (the positions
whose next token is an answer token). Passage score (`agg`):
  "topk" (default, AttnTrace's choice): mean of the passage's k highest token scores,
          so a short decisive sentence is not diluted by a long passage;
  "sum":  total attention mass on the passage (favours long passages);
  "mean": mean token score (favours short ones).
Option "contrast" (baseline_rows): the question rows' mean attention is subtracted first.
A passage is flagged as a likely injection when it DOMINATES (its share of the passage
scores >= `dominance` and it has >= 2x the runner-up) AND its text looks like an
instruction to the model (imperative patterns such as "ignore previous instructions").
"""

from __future__ import annotations

import re

AGGREGATIONS = ("topk", "sum", "mean")

_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget)\b.{0,40}\b(instruction|previous|above|prior|context|rules)"
    r"|\byou (must|should|are to|will) (now )?(say|answer|respond|reply|output|write|print)"
    r"|\b(always|only) (answer|respond|reply|say|output)\b"
    r"|\b(answer|respond|reply) (with|by saying|only with)\b"
    r"|\bnew instructions?\b|\bsystem prompt\b",
    re.IGNORECASE | re.DOTALL,
)


def aggregate(token_scores, spans, agg: str = "topk", k: int = 5) -> list:
    """One score per passage from token scores [T] (torch or numpy) and spans [(start, end)]."""
    import numpy as np

    if agg not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {agg!r}; valid: {', '.join(AGGREGATIONS)}")
    scores = np.asarray(token_scores, dtype=np.float64)
    out = []
    for start, end in spans:
        part = scores[start:end]
        if len(part) == 0:
            out.append(0.0)
        elif agg == "sum":
            out.append(float(part.sum()))
        elif agg == "mean":
            out.append(float(part.mean()))
        else:
            out.append(float(np.sort(part)[::-1][:k].mean()))
    return out


def token_scores(calls, targets, layers="mean", heads=None, baseline_rows=None):
    """Mean attention of the answer rows `targets` [t] to every token: torch [T].

    baseline_rows [b] (e.g. the question's positions): subtract their mean attention and
    clip at 0, so tokens that every row reads (sinks, early tokens, separators) cancel and
    what the answer reads specifically remains ("contrast" variant).
    """
    from .attention import attention_from_calls

    scores = attention_from_calls(calls, targets, layers, heads) / len(targets)
    if baseline_rows is not None:
        base = attention_from_calls(calls, baseline_rows, layers, heads) / len(baseline_rows)
        scores = (scores - base).clamp(min=0.0)
    return scores


def looks_like_instruction(text: str) -> bool:
    """True when the text contains an instruction aimed at the model."""
    return bool(_INSTRUCTION.search(text))


def injection_flags(passages: list, scores: list, dominance: float = 0.5) -> list:
    """Per passage: {"share", "dominant", "instruction_like", "flagged"}."""
    total = sum(max(s, 0.0) for s in scores) or 1.0
    ranked = sorted(scores, reverse=True)
    out = []
    for text, s in zip(passages, scores):
        runner_up = ranked[1] if s == ranked[0] and len(ranked) > 1 else ranked[0]
        dominant = s / total >= dominance and s >= 2.0 * max(runner_up, 1e-12) and s == ranked[0]
        instr = looks_like_instruction(text)
        out.append({"share": s / total, "dominant": bool(dominant), "instruction_like": instr,
                    "flagged": bool(dominant and instr)})
    return out
