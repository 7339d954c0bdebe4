"""Attention x gradient saliency (as in "Hallucination begins where saliency drops").

For an objective f (the log-probability of the tokens that follow the target positions),
layer l's saliency of key j for query i is |sum_h A_l,h[i, j] * df/dA_l,h[i, j]|; the
relevance of input token j is that saliency summed over layers and over the target rows
i. The forward runs the eager kernel (the probabilities must exist to be differentiated),
so it holds every layer's maps for the backward pass: L * H * T^2 floats (SmolLM2 at 1k
tokens: ~1.1 GB). For decoders (the objective needs next-token logits).
"""

from __future__ import annotations

from .capture import encode_ids, targets_of


class _KeepProbs:
    """Observer that keeps each layer's probability blocks (in the autograd graph)."""

    def __init__(self):
        self.blocks: list = []  # (site, q_start, probs [1, H, q, K])

    def on_probs(self, call, q_start, probs):
        self.blocks.append((call.site, q_start, probs))


def log_prob_of_next(logits, ids, targets, offset: int = 0):
    """Sum over targets t of log p(ids[t + 1] | ..t).

    logits [1, T - offset, V] (rows of positions offset..T-1), ids [1, T], targets [t].
    """
    import torch

    logp = torch.log_softmax(logits[0, targets - offset].float(), dim=-1)  # [t, V]
    return logp.gather(1, ids[0, targets + 1][:, None]).sum()


def gradient_from_ids(model, ids, targets):
    """Attention x gradient relevance [T] (torch fp32) of the tokens after `targets` [t]."""
    import torch

    from ..core.session import attach

    from .capture import require_decoder_only

    require_decoder_only(model, "attention x gradient")
    if int(targets.max()) + 1 >= ids.shape[1]:
        raise ValueError("attention x gradient needs the token after each target; the last position has none")
    keep = _KeepProbs()
    with attach(model, kernel="eager", observe=[keep]), torch.enable_grad():
        logits = model(input_ids=ids).logits  # [1, T, V]
        objective = log_prob_of_next(logits, ids, targets)
        grads = torch.autograd.grad(objective, [p for _, _, p in keep.blocks])
    relevance = torch.zeros(ids.shape[1], dtype=torch.float32)
    for (_, q0, probs), grad in zip(keep.blocks, grads):
        rows = targets[(targets >= q0) & (targets < q0 + probs.shape[2])] - q0
        per_head = (probs[0, :, rows] * grad[0, :, rows]).detach()  # [H, t, K]
        relevance += per_head.sum(dim=0).abs().sum(dim=0).float()
    return relevance


def attention_x_gradient(model, tokenizer, text: str, target=-2, max_tokens: int | None = None):
    """Saliency of each input token for predicting the token after `target`: numpy [T].

    target: position(s) whose next token is the objective (default -2: the last token
    is predicted from the one before it). Needs a causal LM (model(...).logits).
    """
    ids = encode_ids(model, tokenizer, text, max_tokens)  # [1, T]
    return gradient_from_ids(model, ids, targets_of(target, ids.shape[1])).numpy()
