"""The shared body of the `linear` and `hybrid` kernels: checks, maps, state, teacher mode."""

from __future__ import annotations

import torch

from ..core.call import AttnCall, KernelOutput, refuse
from ..errors import SpecError

DEFAULT_WINDOW = 64
SLIDING = ("softmax", "refuse")


def _check_options(name: str, chunk: int, sliding: str, window) -> None:
    if chunk < 1:
        raise SpecError(f"{name}: chunk must be >= 1, got {chunk}")
    if sliding not in SLIDING:
        raise SpecError(f"{name}: sliding={sliding!r}; valid: {', '.join(SLIDING)}")
    if name == "hybrid" and window is not None and window < 1:
        raise SpecError(f"hybrid: window must be >= 1 (window 0 is the 'linear' kernel), got {window}")


def resolve_maps(maps):
    """A Maps, None, or a directory saved by `attnlab.convert.save` (loaded once per path)."""
    from .maps import Maps

    if maps is None or isinstance(maps, Maps):
        return maps
    if isinstance(maps, str):
        from .saved import load_cached

        return load_cached(maps)
    raise SpecError(f"maps must be an attnlab.convert.Maps or a directory, got {type(maps).__name__}")


def _layer_maps(call: AttnCall, maps, feature_map, features, seed):
    from .maps import check_kind, default_maps

    if maps is None:
        return default_maps(check_kind(feature_map or "elu"), call.num_heads, call.query.shape[-1], features, seed)
    if feature_map is not None and feature_map != maps.kind:
        raise SpecError(f"feature_map={feature_map!r} but the maps given are {maps.kind!r}")
    from .saved import verify

    verify(maps, call)
    return maps.of(call.site)


def _teacher(call: AttnCall, hooks, student: torch.Tensor, maps) -> torch.Tensor:
    """Exact softmax output [B, Q, H, Dv]; records MSE(student, teacher) over real query rows."""
    from ..kernels import sdpa
    from .maps import site_key

    if maps is None:
        raise SpecError("teacher=True records the transfer loss in the maps: pass maps=")
    with torch.no_grad():
        target = sdpa.forward(call, hooks).output
    err = (student.float() - target.float()).square().mean(dim=(2, 3))  # [B, Q]
    if call.mask is not None:
        live = call.mask.any(-1)[:, 0].float()  # [B, Q] rows that see a key
        maps.losses[site_key(call.site)] = (err * live).sum() / live.sum().clamp_min(1)
    else:
        maps.losses[site_key(call.site)] = err.mean()
    return target


def run(call: AttnCall, hooks, name: str, feature_map, maps, chunk: int, features, seed: int, sliding: str,
        teacher: bool, exact: bool, window) -> KernelOutput:
    """One call of kernel `name` ('linear': window 0; 'hybrid': window w); output [B, Q, H, Dv]."""
    from ..kernels import chunked
    from ..kernels import linear as ln
    from .cache import state_layer

    if name == "hybrid" and (call.cross or not call.causal):
        refuse(call, "hybrid", "cross-attention" if call.cross else "non-causal attention", "'linear'")
    _check_options(name, chunk, sliding, window)
    ln.check_call(call, name)
    if call.sliding_window is not None:
        if sliding == "refuse":
            refuse(call, name, "sliding-window layers with sliding='refuse'", "sliding='softmax'")
        return chunked.forward(call, hooks)
    maps = resolve_maps(maps)
    if name == "hybrid" and window is None:
        window = maps.window if maps is not None and maps.window else DEFAULT_WINDOW
    window = window or 0
    lm = _layer_maps(call, maps, feature_map, features, seed)
    valid = ln.key_validity(call)  # [B|1, 1|H, K, 1]
    k, v = call.kv_for_heads()
    fq, fk, vf = lm.q(call.query, call.scaling), lm.k(k, call.scaling) * valid, v.float()
    gamma = lm.gamma() if window else None
    layer = state_layer(call) if call.positional else None
    state = layer.take(call.k_start, window) if layer is not None else None
    if exact:
        out = ln.reference(call, fq, fk, vf, window, gamma, state)
    else:
        out = ln.attend(call, fq, fk, vf, window, gamma, state, chunk)
    if layer is not None:
        layer.store(fk, vf, state)
    output = out.to(call.value.dtype).transpose(1, 2).contiguous()  # [B, Q, H, Dv]
    if teacher:
        return KernelOutput(output=_teacher(call, hooks, output, maps))
    return KernelOutput(output=output)
