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
    Only the base model runs (no LM head: its [T, vocab] logits are not needed). An
    encoder-decoder's decoder reads the input shifted right (`text.teacher_forced`), so
    its self- and cross-attention get statistics too; `real` masks are kept per stack.
    """
    import torch

    from ..core.session import attach
    from ..kernels.stats import release
    from ..models import trunk
    from ..text import real_masks, teacher_forced

    enc = teacher_forced(model, enc)
    stats = HeadStats(real=real_masks(enc), local_window=local_window, on_layer=on_layer)
    try:
        with attach(model, kernel=kernel, observe=[stats], block_size=block_size), torch.no_grad():
            trunk(model, enc)(**enc)
    finally:
        release()
    return stats


def site_layers(model) -> dict[str, int]:
    """Layers per site name ("encoder", "decoder", "decoder.cross", ...) of `model`, from its
    module names (`core.sites`, as attach() names them); nested wrappers (BertAttention
    around BertSelfAttention) count once."""
    from ..core import sites

    stacks, found = sites.stack_names(model), {}
    for name, module in sites.attention_modules(model).values():
        path, layer = sites.split_name(name)
        stack = stacks.get(path) or sites.stack_word(path) or "decoder"
        found.setdefault(stack + (".cross" if sites.is_cross_module(name, module) else ""), set()).add(layer)
    return {name: len(layers) for name, layers in found.items()}


def count_sites(model) -> int:
    """How many attention sites (stack, role, layer) `model` has (`site_layers`)."""
    return sum(site_layers(model).values())


def head_stats(model, tokenizer, text, max_tokens: int | None = None, truncate: bool = False,
               block_size: int = 256, progress=None, **params):
    """Per-head attention statistics of `model` on `text` (a string or a list: a padded batch).

    Returns a pandas DataFrame, one row per (stack, layer, head) — stack is the site name:
    "decoder", "encoder", "decoder.cross", ... — with the columns of
    `attnlab.observe.stats.SCALARS` and `top_received` (list of {position, token, value},
    plus `row` for a batch). df.attrs holds "sinks" (model-level sink tokens, list of
    {position, token, heads_fraction, mean_received}, plus "stack" naming whose tokens
    they are when the model has several stacks), "tokens" (token texts of row 0),
    "stack_tokens" (per stack when they differ: an encoder-decoder's decoder tokens),
    "n_tokens" and "params". Positions count from each row's first real token; means pool
    the real query positions of all rows. progress: optional callback("layers", done, total)
    as each attention site (every stack's layers, cross-attention too) starts.
    params: local_window, top_k, sink_threshold, sink_fraction, min_support (see DEFAULTS).
    An encoder-decoder's decoder reads the text shifted right (teacher forcing,
    `text.teacher_forced`), so cross-attention rows are decoder tokens, keys encoder tokens.
    """
    from ..text import encode, teacher_forced

    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"head_stats: unknown parameter(s) {unknown}; valid: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    enc = teacher_forced(model, encode(model, tokenizer, text, max_tokens=max_tokens, truncate=truncate))
    on_layer = None
    if progress:
        total, done = count_sites(model), []

        def on_layer(site):
            done.append(site)
            progress("layers", len(done), max(total, len(done)))
    stats = run_stats(model, enc, block_size=block_size, local_window=p["local_window"], on_layer=on_layer)
    return stats_frame(stats, tokenizer, enc, p)


def _row_tokens(tokenizer, ids, mask) -> list[list[str]]:
    """Token texts of the real tokens of every row of ids [B, T]."""
    rows = []
    for b in range(ids.shape[0]):
        keep = ids[b] if mask is None else ids[b][mask[b].bool()]
        rows.append(token_texts(tokenizer, keep))
    return rows


def key_stack(site) -> str:
    """Whose tokens a site's keys are: its own stack's, or the encoder's for cross-attention."""
    return "encoder" if site.role == "cross" else site.stack


def _spaces(tokenizer, enc: dict) -> dict:
    """Per key stack: (token texts per row, first real position per row). The decoder of an
    encoder-decoder has its own tokens; every other stack reads the input's."""
    def space(ids, mask):
        starts = [0] * ids.shape[0] if mask is None else [int(m.float().argmax()) for m in mask]
        return _row_tokens(tokenizer, ids, mask), starts

    out = {"": space(enc["input_ids"], enc.get("attention_mask"))}
    if "decoder_input_ids" in enc:
        out["decoder"] = space(enc["decoder_input_ids"], enc.get("decoder_attention_mask"))
    return out


def _received_means(result: dict, sites: list, starts, min_support: int):
    """[n*H, B, K] mean received attention of `sites`, in real coordinates (NaN where unsupported)."""
    import torch

    blocks = []
    for site in sites:
        r, s = result[site]["received"], result[site]["support"]  # [B, H, K], [B, 1, K]
        mean = (r / s.clamp(min=1)).masked_fill(s < min_support, float("nan"))
        blocks.append(mean.transpose(0, 1))  # [H, B, K]
    width = max(b.shape[2] for b in blocks)
    means = torch.cat([torch.nn.functional.pad(b, (0, width - b.shape[2]), value=float("nan")) for b in blocks])
    shifted = torch.full_like(means, float("nan"))
    for b, st in enumerate(starts):  # move every row's first real token to position 0
        shifted[:, b, :means.shape[2] - st] = means[:, b, st:]
    return shifted


def stats_frame(stats: HeadStats, tokenizer, enc: dict, p: dict):
    """The DataFrame of head_stats() from a finished HeadStats observer."""
    import pandas as pd

    result = stats.result()
    spaces = _spaces(tokenizer, enc)
    tokens = spaces[""][0]
    n_real = min(len(t) for t in tokens)
    support = min(p["min_support"], max(1, n_real // 2))
    rank: dict[str, int] = {}  # site name -> order of first call (encoder, decoder, decoder.cross)
    for site in stats.layers:
        rank.setdefault(site.name, len(rank))
    ordered = sorted(result, key=lambda site: (rank[site.name], site.layer))
    groups: dict[str, list] = {}  # key stack -> its sites, in order
    for site in ordered:
        groups.setdefault(key_stack(site), []).append(site)
    rows, sinks, several = [], [], len(groups) > 1
    for stack, sites in groups.items():
        toks, starts = spaces.get(stack, spaces[""])
        means = _received_means(result, sites, starts, support)  # [n*H, B, K]
        found = find_sinks(means, toks, p["sink_threshold"], p["sink_fraction"])
        sinks += [{**e, "stack": stack} for e in found] if several else found
        k = 0
        for site in sites:
            for head in range(stats.heads[site]):
                row = {"stack": site.name, "layer": site.layer, "head": head}
                row.update({s: float(result[site][s][head]) for s in SCALARS})
                row["top_received"] = _top_keys(means[k], toks, p["top_k"])
                rows.append(row)
                k += 1
    df = pd.DataFrame(rows)
    if several:  # stacks in the order the model runs them
        df = df.sort_values(["stack", "layer", "head"], key=lambda c: c.map(rank) if c.name == "stack" else c,
                            kind="stable").reset_index(drop=True)
    df.attrs.update(sinks=sorted(sinks, key=lambda e: -e["mean_received"]), tokens=tokens[0],
                    n_tokens=n_real if len(tokens) == 1 else [len(t) for t in tokens],
                    params={**p, "min_support": support})
    if "decoder" in spaces:
        df.attrs["stack_tokens"] = {"decoder": spaces["decoder"][0][0]}
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
