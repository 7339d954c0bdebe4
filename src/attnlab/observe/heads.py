"""head_stats(): one streamed forward -> a table of per-(layer, head) attention statistics.

Received attention and sink tokens (defaults, all parameters of head_stats):
  received[j]   mean of p_i(j) over the real queries i != j that may see key j (Future
                Attention Influence). Keys seen by fewer than `min_support` queries (16,
                at most half the input) are not ranked: near the end of a causal input a
                key is seen by a handful of queries and any previous-token head gives it ~1.
  top_received  the `top_k` (5) keys with the highest received attention, per head.
  sinks         positions whose received attention is >= `sink_threshold` (0.1, i.e. a
                tenth of every later query's attention on average) in at least
                `sink_fraction` (0.2) of all heads of the model; position 0 and later
                "hidden" sinks (newlines, punctuation) alike.
"""

from __future__ import annotations

from .stats import SCALARS, HeadStats

DEFAULTS = dict(local_window=32, top_k=5, sink_threshold=0.1, sink_fraction=0.2, min_support=16)


def token_texts(tokenizer, ids) -> list[str]:
    """The text of each token id (decoded one by one, so spaces and newlines show)."""
    return [tokenizer.decode([int(i)]) for i in ids]


def run_stats(model, enc: dict, block_size: int = 256, local_window: int = 32, on_layer=None,
              kernel: str = "stats") -> HeadStats:
    """One forward of `enc` with a HeadStats observer; returns it.

    kernel: "stats" (`kernels.stats`: eager on each block's visible keys, the default) or
    "eager" (every block against all keys; the same statistics, slower).
    Only the base model runs (no LM head: its [T, vocab] logits are not needed).
    """
    import torch

    from ..core.session import attach
    from ..kernels.stats import release

    stats = HeadStats(real=enc.get("attention_mask"), local_window=local_window, on_layer=on_layer)
    base = getattr(model, "base_model", model)
    try:
        with attach(model, kernel=kernel, observe=[stats], block_size=block_size), torch.no_grad():
            base(**enc)
    finally:
        release()
    return stats


def head_stats(model, tokenizer, text, max_tokens: int | None = None, truncate: bool = False,
               block_size: int = 256, progress=None, **params):
    """Per-head attention statistics of `model` on `text` (a string or a list: a padded batch).

    Returns a pandas DataFrame, one row per (layer, head), with the columns of
    `attnlab.observe.stats.SCALARS` and `top_received` (list of {position, token, value},
    plus `row` for a batch). df.attrs holds "sinks" (model-level sink tokens, list of
    {position, token, heads_fraction, mean_received}), "tokens" (token texts of row 0),
    "n_tokens" and "params". Positions count from each row's first real token; means pool
    the real query positions of all rows. progress: optional callback("layers", done, total)
    as each layer starts.
    params: local_window, top_k, sink_threshold, sink_fraction, min_support (see DEFAULTS).
    """
    from ..text import encode

    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"head_stats: unknown parameter(s) {unknown}; valid: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    enc = encode(model, tokenizer, text, max_tokens=max_tokens, truncate=truncate)
    n_layers = getattr(model.config, "num_hidden_layers", None)
    on_layer = (lambda site: progress("layers", site.layer + 1, n_layers)) if progress else None
    stats = run_stats(model, enc, block_size=block_size, local_window=p["local_window"], on_layer=on_layer)
    return stats_frame(stats, tokenizer, enc, p)


def _row_tokens(tokenizer, enc) -> list[list[str]]:
    """Token texts of the real tokens of every row."""
    ids, mask = enc["input_ids"], enc.get("attention_mask")
    rows = []
    for b in range(ids.shape[0]):
        keep = ids[b] if mask is None else ids[b][mask[b].bool()]
        rows.append(token_texts(tokenizer, keep))
    return rows


def _received_means(result: dict, starts, min_support: int):
    """[L*H, B, K] mean received attention in real coordinates (NaN where unsupported)."""
    import torch

    blocks = []
    for layer in sorted(result):
        r, s = result[layer]["received"], result[layer]["support"]  # [B, H, K], [B, 1, K]
        mean = (r / s.clamp(min=1)).masked_fill(s < min_support, float("nan"))
        blocks.append(mean.transpose(0, 1))  # [H, B, K]
    means = torch.cat(blocks)
    shifted = torch.full_like(means, float("nan"))
    for b, st in enumerate(starts):  # move every row's first real token to position 0
        shifted[:, b, :means.shape[2] - st] = means[:, b, st:]
    return shifted


def stats_frame(stats: HeadStats, tokenizer, enc: dict, p: dict):
    """The DataFrame of head_stats() from a finished HeadStats observer."""
    import pandas as pd

    result = stats.result()
    tokens = _row_tokens(tokenizer, enc)
    mask = enc.get("attention_mask")
    starts = [0] * len(tokens) if mask is None else [int(m.float().argmax()) for m in mask]
    n_real = min(len(t) for t in tokens)
    support = min(p["min_support"], max(1, n_real // 2))
    means = _received_means(result, starts, support)  # [L*H, B, K]
    rows, k = [], 0
    for site in sorted(result):
        for head in range(stats.heads[site]):
            row = {"stack": site.name, "layer": site.layer, "head": head}
            row.update({s: float(result[site][s][head]) for s in SCALARS})
            row["top_received"] = _top_keys(means[k], tokens, p["top_k"])
            rows.append(row)
            k += 1
    df = pd.DataFrame(rows)
    df.attrs.update(sinks=find_sinks(means, tokens, p["sink_threshold"], p["sink_fraction"]),
                    tokens=tokens[0], n_tokens=n_real if len(tokens) == 1 else [len(t) for t in tokens],
                    params={**p, "min_support": support})
    return df


def _top_keys(mean, tokens, top_k: int) -> list[dict]:
    """The top_k (row, position) of one head's received attention mean [B, K]."""
    import torch

    flat = torch.nan_to_num(mean, nan=-1.0).reshape(-1)
    vals, idx = flat.topk(min(top_k, flat.numel()))
    out = []
    for v, i in zip(vals.tolist(), idx.tolist()):
        if v < 0:
            break
        b, pos = divmod(i, mean.shape[1])
        entry = {"position": pos, "token": tokens[b][pos], "value": round(v, 6)}
        if len(tokens) > 1:
            entry["row"] = b
        out.append(entry)
    return out


def find_sinks(means, tokens, threshold: float, fraction: float) -> list[dict]:
    """Positions whose received attention >= threshold in >= fraction of all heads."""
    import torch

    hit = (torch.nan_to_num(means, nan=0.0) >= threshold).float().mean(0)  # [B, K]
    avg = torch.nan_to_num(means, nan=0.0).mean(0)  # [B, K]
    found = []
    for b, pos in (hit >= fraction).nonzero().tolist():
        entry = {"position": pos, "token": tokens[b][pos], "heads_fraction": round(float(hit[b, pos]), 4),
                 "mean_received": round(float(avg[b, pos]), 6)}
        if len(tokens) > 1:
            entry["row"] = b
        found.append(entry)
    return sorted(found, key=lambda e: -e["mean_received"])
