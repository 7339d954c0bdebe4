"""Where each attention module sits: its stack, role and layer, from its place in the model.

A module's qualified name gives it: the first numeric part is its layer, the path before
it is its stack's layer list ("model.encoder.layers" in "model.encoder.layers.3.self_attn",
"decoder.block" in T5's "decoder.block.2.layer.1.EncDecAttention"). Stacks are named by
the words in that path (vision / audio / text / encoder / decoder); a model with a single
unnamed stack ("model.layers", GPT-2's "transformer.h") has "decoder" for causal attention
and "encoder" otherwise. Cross-attention is recognised by the module (`is_cross_attention`,
names such as encoder_attn / crossattention / EncDecAttention) or by the encoder states it
receives (`key_value_states`, `encoder_hidden_states`).

A forward pre-hook on every attention module (PyTorch's own hook API; removed on detach)
records what the module was called with: its cache (for the query positions) and whether
it was given encoder states.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .call import Site

STACK_WORDS = (("vision", "vision"), ("visual", "vision"), ("image", "vision"), ("audio", "audio"),
               ("speech", "audio"), ("text", "text"), ("language", "text"), ("encoder", "encoder"),
               ("decoder", "decoder"))
CROSS_NAMES = ("encoder_attn", "crossattention", "cross_attn", "cross_attention", "encdecattention")
CROSS_KWARGS = ("key_value_states", "encoder_hidden_states")


def split_name(name: str) -> tuple[str, int]:
    """'model.encoder.layers.3.self_attn' -> ('model.encoder.layers', 3); no number -> (parent, 0)."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[:i]), int(part)
    return ".".join(parts[:-1]), 0


def stack_word(path: str) -> str | None:
    """The stack name the words of a layer-list path give, or None."""
    words = path.lower().split(".")
    for key, name in STACK_WORDS:
        if any(key in w for w in words):
            return name
    return None


def is_cross_module(name: str, module: torch.nn.Module) -> bool:
    flag = getattr(module, "is_cross_attention", None)
    if isinstance(flag, bool):
        return flag
    parts = name.split(".")
    after = next((i for i, p in enumerate(parts) if p.isdigit()), len(parts) - 2) + 1
    return any(c in p.lower() for p in parts[after:] for c in CROSS_NAMES)


def attention_modules(model: torch.nn.Module) -> dict[int, tuple[str, torch.nn.Module]]:
    """id -> (qualified name, module) of every module whose class name says attention."""
    return {id(m): (n, m) for n, m in model.named_modules() if "attention" in type(m).__name__.lower()}


def stack_names(model: torch.nn.Module) -> dict[str, str]:
    """Layer-list path -> stack name, unique per path (a second 'vision' becomes 'vision2')."""
    paths: dict[str, bool] = {}
    for name, module in attention_modules(model).values():
        path, _ = split_name(name)
        paths.setdefault(path, bool(getattr(module, "is_causal", False)))
    # nested wrappers (BertAttention around BertSelfAttention) share their layer list
    out, used = {}, {}
    for path, causal in paths.items():
        base = stack_word(path) or ("decoder" if causal else "encoder")
        used[base] = used.get(base, 0) + 1
        out[path] = base if used[base] == 1 else f"{base}{used[base]}"
    return out


@dataclass
class Seen:
    """What one attention module was last called with (its forward pre-hook)."""

    past: int | None = None  # tokens already in its cache before this call, None = no cache
    encoder_states: bool = False  # it was given encoder states (cross-attention)
    cache: object = None  # the transformers Cache it was given (stateful kernels read their layer's state)


def find_cache(args, kwargs, cache_type):
    """The transformers Cache (`cache_type`) among a module call's arguments, or None."""
    for value in kwargs.values():
        if isinstance(value, cache_type):
            return value
    for value in args:
        if isinstance(value, cache_type):
            return value
    return None


def make_pre_hook(seen: dict, module_layer: int | None):
    """A forward pre-hook recording `Seen` for its module in `seen` (keyed by module id)."""
    from transformers.cache_utils import Cache  # once per attach, not once per call

    def hook(module, args, kwargs):
        cache = find_cache(args, kwargs, Cache)
        past = None
        if cache is not None:
            idx = module_layer if module_layer is not None else 0
            try:
                past = int(cache.get_seq_length(idx))
            except (IndexError, KeyError, TypeError):
                past = None
        enc = any(kwargs.get(k) is not None for k in CROSS_KWARGS)
        seen[id(module)] = Seen(past=past, encoder_states=enc, cache=cache)
        return None

    return hook


def resolve(name: str, module: torch.nn.Module, stacks: dict[str, str], encoder_states: bool) -> Site:
    """The Site of an attention module named `name`."""
    path, layer = split_name(name)
    stack = stacks.get(path) or stack_word(path) or ("decoder" if getattr(module, "is_causal", True) else "encoder")
    role = "cross" if (encoder_states or is_cross_module(name, module)) else "self"
    return Site(stack, role, layer)
