"""The one attention function attnlab registers with transformers, and its mask function.

transformers looks both up by the model's attention-implementation name. The mask
function must be registered too: for a name it does not know, transformers 5 silently
passes `attention_mask=None`, which drops padding and Gemma's sliding windows.
"""

from __future__ import annotations

import weakref

import torch

from .call import AttnCall

NAME = "attnlab"

# id(attention module) -> (weak reference to the module, its Session). Filled by attach().
_ROUTES: dict[int, tuple[weakref.ref, object]] = {}

# Tensor keyword arguments transformers passes that need no handling: rotary positions are
# already applied to q and k; cache positions are read from the cache itself.
HARMLESS_TENSORS = ("position_ids", "cache_position")


class UnsupportedCallError(TypeError):
    """An attention call carries something attnlab does not know how to apply."""


def register() -> None:
    """Register the dispatcher and its mask function under NAME (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def route(module: torch.nn.Module, session) -> None:
    _ROUTES[id(module)] = (weakref.ref(module), session)


def unroute(module: torch.nn.Module) -> None:
    _ROUTES.pop(id(module), None)


def session_of(module: torch.nn.Module):
    """The Session that `module` is attached to, or None."""
    entry = _ROUTES.get(id(module))
    if entry is None or entry[0]() is not module:
        return None
    return entry[1]


def _normalise_mask(mask: torch.Tensor | None, k_len: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """bool mask (True = visible) and float bias from whatever mask the model passed."""
    if mask is None:
        return None, None
    mask = mask[..., :k_len]
    if mask.dtype == torch.bool:
        return mask, None
    visible = mask > torch.finfo(mask.dtype).min / 2
    bias = mask.masked_fill(~visible, 0.0)
    return visible, (bias if bool(bias.any()) else None)


def score_terms(module, kwargs: dict) -> dict:
    """Take the score terms out of the kwargs (which keep only flags); unknown tensors are an error."""
    terms = {
        "sliding_window": kwargs.pop("sliding_window", None) or getattr(module, "sliding_window", None),
        "softcap": kwargs.pop("softcap", None),
        "position_bias": kwargs.pop("position_bias", None),
        "sinks": kwargs.pop("s_aux", None),
    }
    for name in HARMLESS_TENSORS:
        kwargs.pop(name, None)
    unknown = sorted(n for n, v in kwargs.items() if torch.is_tensor(v))
    if unknown:
        raise UnsupportedCallError(
            f"{type(module).__name__} passes the tensor argument(s) {', '.join(unknown)} to its attention "
            "function, which attnlab does not know how to apply; it refuses rather than ignore them")
    return terms


def build_call(session, module, query, key, value, attention_mask, dropout, scaling, is_causal, kwargs) -> AttnCall:
    """Assemble the AttnCall of one attention call (see `attnlab.core.call` for shapes)."""
    kwargs = dict(kwargs)
    terms = score_terms(module, kwargs)
    site = session.site_of(module, query.shape[2], key.shape[2])
    q_start, k_start = session.positions(module, site, query.shape[2], key.shape[2])
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    mask, bias = _normalise_mask(attention_mask, key.shape[2])
    position_bias = terms["position_bias"]
    if position_bias is not None:
        position_bias = position_bias[..., :key.shape[2]]
    return AttnCall(
        site=site,
        query=query,
        key=key,
        value=value,
        mask=mask,
        bias=bias,
        scaling=scaling if scaling is not None else query.shape[-1] ** -0.5,
        causal=bool(causal) and site.role == "self",
        q_start=q_start,
        k_start=k_start,
        sliding_window=terms["sliding_window"] if site.role == "self" else None,
        softcap=terms["softcap"],
        dropout=dropout,
        position_bias=position_bias,
        sinks=terms["sinks"],
        module=module,
        kwargs=kwargs,
    )


def attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """The function transformers calls for every attention layer of an attached model.

    Returns (output [B, Q, H, Dv], weights [B, H, Q, K] or None), as transformers expects.
    """
    session = session_of(module)
    if session is None:
        raise RuntimeError(
            f"{type(module).__name__} uses attention implementation {NAME!r} but is not inside "
            "attnlab.attach(); attach the model (or call model.set_attn_implementation('sdpa'))"
        )
    call = build_call(session, module, query, key, value, attention_mask, dropout, scaling, is_causal, kwargs)
    return session.run(call)
