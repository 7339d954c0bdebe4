"""attach(): route a model's attention through attnlab for the duration of a `with` block."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from . import dispatch
from .call import AttnCall
from .hooks import Hooks
from .kernels import Kernel, check_params, get_kernel


class UnsupportedModelError(TypeError):
    """The model's attention does not go through transformers' AttentionInterface."""


@dataclass
class Session:
    """One attach(): the kernel, its parameters, the hooks, and what passed through."""

    kernel_name: str
    kernel: Kernel
    params: dict
    hooks: Hooks
    calls: int = 0
    calls_by_phase: dict = field(default_factory=dict)
    densities: list = field(default_factory=list)
    _layers: dict = field(default_factory=dict)

    def layer_of(self, module: torch.nn.Module) -> int:
        """The module's `layer_idx`, or (ViT, CLIP, ...) its rank among modules first seen."""
        idx = getattr(module, "layer_idx", None)
        if isinstance(idx, int):
            return idx
        return self._layers.setdefault(id(module), len(self._layers))

    def run(self, call: AttnCall):
        self.calls += 1
        self.calls_by_phase[call.phase] = self.calls_by_phase.get(call.phase, 0) + 1
        self.hooks.on_call(call)
        result = self.kernel.forward(call, self.hooks, **self.params)
        if result.density != 1.0 or self.kernel_name not in ("eager", "sdpa"):
            self.densities.append((call.layer, call.phase, result.density))
        output = self.hooks.output(call, result.output)
        return output, result.weights


def _configs(model) -> list:
    """Every config whose attention implementation attach() may change (model + sub-configs)."""
    from transformers import PreTrainedModel

    found, seen = [], set()
    stack = [m.config for m in model.modules() if isinstance(m, PreTrainedModel)]
    while stack:
        cfg = stack.pop()
        if id(cfg) in seen:
            continue
        seen.add(id(cfg))
        found.append(cfg)
        stack.extend(getattr(cfg, k) for k in getattr(cfg, "sub_configs", {}) if getattr(cfg, k, None) is not None)
    return found


def check_supported(model) -> None:
    """Raise UnsupportedModelError unless `model` routes attention through AttentionInterface."""
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a transformers PreTrainedModel; attnlab attaches to "
            "Hugging Face models whose attention goes through AttentionInterface"
        )
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and not module._can_set_attn_implementation():
            raise UnsupportedModelError(
                f"{type(module).__name__} does not route its attention through transformers' "
                "AttentionInterface, so attnlab cannot attach to it"
            )


def _make_session(kernel: str, params: dict, modify, observe) -> Session:
    spec = get_kernel(kernel)
    check_params(kernel, params)
    hooks = Hooks(tuple(modify), tuple(observe))
    needing = hooks.needing_probs()
    if needing and not spec.exposes_probs:
        names = ", ".join(type(h).__name__ for h in needing)
        valid = ", ".join(sorted(n for n, k in _kernels().items() if k.exposes_probs))
        raise ValueError(
            f"kernel {kernel!r} does not expose attention scores/probabilities, which {names} "
            f"need; use one of: {valid}"
        )
    return Session(kernel, spec, dict(params), hooks)


def _kernels() -> dict:
    from .kernels import KERNELS

    return KERNELS


@contextmanager
def attach(model, kernel: str = "sdpa", modify=(), observe=(), **kernel_params):
    """Route every attention call of `model` through attnlab inside a `with` block.

    kernel: a name from `attnlab.kernels.KERNELS`; kernel_params are its parameters.
    modify / observe: modifiers and observers (see `attnlab.hooks`), applied in order.
    Yields the Session (call counts, densities). On exit, even after an exception, the
    model gets back exactly the attention implementation(s) it had. Attaching a model
    that is already attached raises RuntimeError.
    """
    session = _make_session(kernel, kernel_params, modify, observe)
    check_supported(model)
    modules = list(model.modules())
    if any(dispatch.session_of(m) is not None for m in modules):
        raise RuntimeError(f"{type(model).__name__} is already attached; leave the outer attach() first")
    dispatch.register()
    saved = [(cfg, cfg._attn_implementation_internal) for cfg in _configs(model)]
    try:
        for module in modules:
            dispatch.route(module, session)
        model.set_attn_implementation(dispatch.NAME)
        if model.config._attn_implementation != dispatch.NAME:
            raise UnsupportedModelError(f"{type(model).__name__} refused attention implementation {dispatch.NAME!r}")
        yield session
    finally:
        for cfg, impl in saved:
            cfg._attn_implementation_internal = impl
        for module in modules:
            dispatch.unroute(module)
