"""inspect_model(): what `attnlab inspect` does: statistics + probes -> heads.csv, heads.json."""

from __future__ import annotations

import time
from collections import Counter


def resolve_text(model, tokenizer, text: str | None, max_tokens: int | None) -> tuple[str, bool]:
    """(text, truncate): the user's text cut to max_tokens, or the default Hamlet passage.

    Raises InputError when max_tokens exceeds the model's context.
    """
    from ..models import context_length
    from ..text import InputError
    from .kinds import DEFAULT_TOKENS, default_text

    limit = context_length(model)
    if max_tokens is not None and (max_tokens < 1 or (limit is not None and max_tokens > limit)):
        raise InputError(f"--max-tokens {max_tokens} is outside 1..{limit} (the model's context is {limit} tokens)")
    if text is None:  # our own passage: cut it to fit once the tokenizer's special tokens are added
        return default_text(tokenizer, max_tokens or DEFAULT_TOKENS), True
    return text, max_tokens is not None


def layout_summary(model) -> dict:
    """Model class, layers, heads, kv heads, head dim, sliding windows, from the config."""
    cfg = model.config
    heads = getattr(cfg, "num_attention_heads", None)
    types = getattr(cfg, "layer_types", None) or []
    window = getattr(cfg, "sliding_window", None)
    return {
        "model": type(model).__name__,
        "layers": getattr(cfg, "num_hidden_layers", None),
        "heads": heads,
        "kv_heads": getattr(cfg, "num_key_value_heads", heads),
        "head_dim": getattr(cfg, "head_dim", None) or (cfg.hidden_size // heads if heads else None),
        "sliding_window": window if window and ("sliding_attention" in types or not types) else None,
        "sliding_layers": sum(t == "sliding_attention" for t in types),
        "causal": bool(getattr(cfg, "is_decoder", False) or model.can_generate()),
    }


def inspect_model(model_name: str | None, out_dir, text: str | None = None, max_tokens: int | None = None,
                  probes: bool = True, command: str = "attnlab inspect", progress=None, head_stats=None) -> dict:
    """Load `model_name`, compute head_kinds() on `text`, write out_dir/heads.csv + heads.json.

    head_stats: optional function(model, tokenizer, text, max_tokens=, truncate=) giving the
    statistics DataFrame instead of `observe.heads.head_stats` (`attnlab.distributed`'s
    sharded one under torchrun). Nothing is written unless everything was computed (files are renamed into place).
    Returns a summary: files, n_tokens, kinds counts, strongest sinks, layout, seconds.
    """
    from ..models import load
    from .export import heads_document, write_heads
    from .kinds import head_kinds

    start = time.perf_counter()
    model, tokenizer = load(model_name)
    text, truncate = resolve_text(model, tokenizer, text, max_tokens)
    stats = None if head_stats is None else head_stats(model, tokenizer, text, max_tokens=max_tokens, truncate=truncate)
    df = head_kinds(model, tokenizer, text, stats=stats, probes=probes, progress=progress,
                    max_tokens=max_tokens, truncate=truncate)
    name = model_name or "smollm2-135m"
    params = {"probes": probes, "needle_cases": df.attrs.get("needle_cases", []),
              "thresholds": df.attrs.get("thresholds", {})}
    doc = heads_document(df, name, "eager", command, params)
    csv_path, json_path = write_heads(df, out_dir, doc)
    stacks = {stack: {"layers": int(g["layer"].nunique()), "heads": int(g["head"].nunique()),
                      "kinds": dict(Counter(g["kind"]).most_common())}
              for stack, g in df.groupby("stack", sort=False)}
    return {
        "model": name,
        "n_tokens": doc["n_tokens"],
        "files": [str(csv_path), str(json_path)],
        "stacks": stacks,
        "notes": doc["notes"],
        "kinds": dict(Counter(df["kind"]).most_common()),
        "sinks": doc["sinks"][:5],
        "layout": layout_summary(model),
        "seconds": round(time.perf_counter() - start, 1),
    }
