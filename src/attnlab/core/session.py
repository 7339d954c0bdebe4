"""attach(): route a model's attention through attnlab for the duration of a `with` block."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from . import dispatch, sites
from .call import AttnCall, Site
from .hooks import Hooks
from ..kernels import Kernel, check_params, get_kernel


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
    names: dict = field(default_factory=dict)  # id(module) -> qualified name
    stacks: dict = field(default_factory=dict)  # layer-list path -> stack name
    seen: dict = field(default_factory=dict)  # id(module) -> sites.Seen of its current call
    _sites: dict = field(default_factory=dict)
    _self_start: dict = field(default_factory=dict)  # (stack, layer) -> q_start of its self-attention
    kv: object = None  # attnlab.kv.state.KVState of attach(kv=...), or None

    @property
    def kv_bytes(self) -> dict | None:
        """KV-cache bytes held per layer / head (`attnlab.kv.state.KVState.bytes`), or None without kv."""
        return None if self.kv is None else self.kv.bytes()

    def site_of(self, module: torch.nn.Module, q_len: int = 0, k_len: int = 0) -> Site:
        """The module's (stack, role, layer), from its place in the model (`core.sites`)."""
        seen = self.seen.get(id(module))
        key = (id(module), bool(seen and seen.encoder_states))
        if key not in self._sites:
            name = self.names.get(id(module), type(module).__name__)
            self._sites[key] = sites.resolve(name, module, self.stacks, key[1])
        return self._sites[key]

    def positions(self, module, site: Site, q_len: int, k_len: int) -> tuple[int, int | None]:
        """(q_start, k_start) of a call: from the module's cache length, never from K - Q alone.

        Self-attention: queries start after the cached tokens; keys are the last k_len
        positions (a sliding-window cache holds only its window) or, when there are more
        key slots than tokens (a static cache), slots 0..K-1. Without a cache in sight the
        keys are the cached prefix plus the queries (K - Q). Cross-attention: the queries
        continue the decoder's own self-attention positions; keys have none.
        """
        seen = self.seen.get(id(module))
        past = seen.past if seen is not None else None
        if site.role == "cross":
            return self._self_start.get((site.stack, site.layer), 0), None
        q_start = k_len - q_len if past is None else past
        k_start = q_start + q_len - k_len if k_len <= q_start + q_len else 0
        self._self_start[(site.stack, site.layer)] = q_start
        return q_start, k_start

    def layer_of(self, module: torch.nn.Module) -> int:
        """The module's layer within its stack."""
        return self.site_of(module).layer

    def run(self, call: AttnCall):
        self.calls += 1
        self.calls_by_phase[call.phase] = self.calls_by_phase.get(call.phase, 0) + 1
        served = None
        if self.kv is not None:
            call, served = self.kv.before(call, self)
        self.hooks.on_call(call)
        result = served if served is not None else self.kernel.forward(call, self.hooks, **self.params)
        if self.kv is not None:
            self.kv.after(call)
        if result.density != 1.0 or self.kernel_name not in ("eager", "sdpa"):
            self.densities.append((call.site, call.phase, result.density))
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
    from ..kernels import KERNELS

    return KERNELS


@contextmanager
def attach(model, kernel: str = "sdpa", modify=(), observe=(), kv=None, **kernel_params):
    """Route every attention call of `model` through attnlab inside a `with` block.

    kernel: a name from `attnlab.kernels.KERNELS`; kernel_params are its parameters.
    modify / observe: modifiers and observers (see `attnlab.core.hooks`), applied in order;
    a modifier with `install(model) -> handles` (tune's head_lora, PEFT) is installed too.
    kv: a KV-cache policy spec ("snapkv:ratio=0.5", see `attnlab.kv`), or None.
    Yields the Session (call counts, densities). On exit, even after an exception, the
    model gets back exactly the attention implementation(s) it had. Attaching a model
    that is already attached raises RuntimeError.
    """
    session = _make_session(kernel, kernel_params, modify, observe)
    if kv is not None:
        from ..kv import make_state

        session.kv = make_state(kv)
    check_supported(model)
    modules = list(model.modules())
    if any(dispatch.session_of(m) is not None for m in modules):
        raise RuntimeError(f"{type(model).__name__} is already attached; leave the outer attach() first")
    dispatch.register()
    saved = [(cfg, cfg._attn_implementation_internal) for cfg in _configs(model)]
    session.names = {id(m): n for n, m in model.named_modules()}
    session.stacks = sites.stack_names(model)
    handles = []
    try:
        for module in modules:
            dispatch.route(module, session)
        for name, module in sites.attention_modules(model).values():
            layer = getattr(module, "layer_idx", None)
            hook = sites.make_pre_hook(session.seen, layer if isinstance(layer, int) else sites.split_name(name)[1])
            handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        if session.kv is not None:
            handles.extend(session.kv.install(model))
        for mod in session.hooks.modifiers:  # modifiers living on projection modules (tune: head_lora, PEFT) hook in here
            if callable(getattr(mod, "install", None)):
                handles.extend(mod.install(model))
        model.set_attn_implementation(dispatch.NAME)
        if model.config._attn_implementation != dispatch.NAME:
            raise UnsupportedModelError(f"{type(model).__name__} refused attention implementation {dispatch.NAME!r}")
        yield session
    finally:
        for handle in handles:
            handle.remove()
        for cfg, impl in saved:
            cfg._attn_implementation_internal = impl
        for module in modules:
            dispatch.unroute(module)
