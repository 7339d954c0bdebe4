"""Ground truth: leave-one-out ablation of passages.

The importance of passage k is log p(answer | full context) - log p(answer | context
without passage k), the answer's total log-probability in nats (teacher forcing). One
forward per passage plus one for the full context (SDPA, no gradients).
"""

from __future__ import annotations

from .capture import Progress


def answer_log_prob(model, ids, targets) -> float:
    """Total log-probability (nats) of the tokens after `targets` [t] in ids [1, T]."""
    import torch

    from .gradient import log_prob_of_next

    keep = ids.shape[1] - int(targets.min())
    with torch.no_grad():
        logits = model(input_ids=ids, logits_to_keep=keep).logits  # [1, keep, V]
    return float(log_prob_of_next(logits, ids, targets, offset=ids.shape[1] - keep))


def leave_one_out(model, ctx, progress: Progress | None = None) -> dict:
    """{"full": log p, "without": [log p without passage k], "importance": [drop in nats]}."""
    full = answer_log_prob(model, ctx.tensor(), ctx.answer_targets())
    without = []
    for k in range(len(ctx.passages)):
        without.append(answer_log_prob(model, ctx.tensor(drop=k), ctx.answer_targets(drop=k)))
        if progress is not None:
            progress("ablation", k + 1, len(ctx.passages))
    return {"full": full, "without": without, "importance": [full - w for w in without]}
