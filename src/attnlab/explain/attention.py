"""Raw attention as an explanation: the target's head-averaged attention row.

layers="last": the last layer's row (what the final layer reads); layers="mean": the row
averaged over all layers. Several targets: rows summed. Computed from the captured
queries/keys, only the target rows are formed (memory T floats per head and layer).
"""

from __future__ import annotations

from .capture import capture, encode_ids, head_mean_rows, targets_of

LAYERS = ("last", "mean")


def attention_from_calls(calls, targets, layers: str = "mean", heads=None):
    """Raw attention relevance [T] (torch fp32): rows of `targets` [t], summed over targets.

    layers: "last", "mean", or a list of layer indices (averaged); heads: None (mean over
    all heads) or a list of head indices to average.
    """
    if isinstance(layers, str):
        if layers not in LAYERS:
            raise ValueError(f"unknown layers {layers!r}; valid: {', '.join(LAYERS)} or a list of indices")
        chosen = calls[-1:] if layers == "last" else calls
    else:
        chosen = [calls[i] for i in layers]
    total = None
    for call in chosen:
        if heads is None:
            rows = head_mean_rows(call, targets)  # [t, T]
        else:
            from .capture import head_rows

            rows = head_rows(call, targets)[list(heads)].mean(dim=0)
        total = rows.sum(dim=0) if total is None else total + rows.sum(dim=0)
    return total / len(chosen)


def raw_attention(model, tokenizer, text: str, target=-1, layers: str = "mean", max_tokens: int | None = None):
    """Input-token relevance for `target` from raw attention: numpy array [T] (sums to len(targets))."""
    ids = encode_ids(model, tokenizer, text, max_tokens)  # [1, T]
    calls = capture(model, ids)
    return attention_from_calls(calls, targets_of(target, ids.shape[1]), layers).numpy()
