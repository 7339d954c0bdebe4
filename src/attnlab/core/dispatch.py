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


def build_call(session, module, query, key, value, attention_mask, dropout, scaling, is_causal, kwargs) -> AttnCall:
    """Assemble the AttnCall of one attention call (see `attnlab.call` for shapes)."""
    kwargs = dict(kwargs)
    window = kwargs.pop("sliding_window", None) or getattr(module, "sliding_window", None)
    softcap = kwargs.pop("softcap", None)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    mask, bias = _normalise_mask(attention_mask, key.shape[2])
    return AttnCall(
        layer=session.layer_of(module),
        query=query,
        key=key,
        value=value,
        mask=mask,
        bias=bias,
        scaling=scaling if scaling is not None else query.shape[-1] ** -0.5,
        causal=bool(causal),
        sliding_window=window,
        softcap=softcap,
        dropout=dropout,
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
