"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers").

Each layer's attention, averaged over heads (GQA: every query head counts once, its key
head shared with its group), is mixed with the residual stream as
    A_hat_l = residual * I + (1 - residual) * A_l        (paper: residual = 0.5)
and rollout is the product A_hat_L ... A_hat_1. The relevance of input token j for target
position t is row t of that product, entry j.

Memory-light: instead of multiplying n x n matrices, the target's one-hot row vector v is
propagated backwards, v <- residual * v + (1 - residual) * v A_l, layer by layer. v A_l
only needs the rows of A_l where v is non-zero, recomputed from the captured queries and
keys in blocks of `block_size` queries (see `capture`). Peak extra memory is
block_size x T floats per head; compute is one attention pass per layer.
Several targets give the sum of their rows (rollout is linear in v).
"""

from __future__ import annotations

from .capture import Progress, blocks, capture, encode_ids, head_mean_rows, targets_of


def rollout_from_calls(calls, targets, residual: float = 0.5, block_size: int = 256,
                       progress: Progress | None = None):
    """Rollout relevance [T] (torch fp32) of the target positions, from captured calls.

    calls: per-layer AttnCalls from `capture` (query [1, H, T, D]); targets: LongTensor [t].
    """
    import torch

    n = calls[0].k_len
    v = torch.zeros(n, dtype=torch.float32)  # [T] relevance flowing backwards
    v[targets] = 1.0
    for done, call in enumerate(reversed(calls)):
        rows_needed = torch.nonzero(v).flatten()  # queries whose row contributes
        mixed = torch.zeros(n, dtype=torch.float32)  # v A_l  [T]
        with torch.no_grad():
            for idx in blocks(rows_needed, block_size):
                mixed += v[idx] @ head_mean_rows(call, idx)  # [q] @ [q, T]
        v = residual * v + (1.0 - residual) * mixed
        if progress is not None:
            progress("rollout", done + 1, len(calls))
    return v


def rollout(model, tokenizer, text: str, target=-1, residual: float = 0.5, block_size: int = 256,
            max_tokens: int | None = None, progress: Progress | None = None):
    """Input-token relevance for `target` by attention rollout: numpy array [T], sums to len(targets).

    target: token position (negative from the end) or a list of positions (rows summed).
    T is the number of tokens `tokenizer` makes of `text` (special tokens included).
    Works for decoders (causal, GQA, sliding windows) and encoders alike.
    """
    ids = encode_ids(model, tokenizer, text, max_tokens)  # [1, T]
    calls = capture(model, ids)
    relevance = rollout_from_calls(calls, targets_of(target, ids.shape[1]), residual, block_size, progress)
    return relevance.numpy()
