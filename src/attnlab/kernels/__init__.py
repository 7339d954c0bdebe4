"""The kernel registry: a plain dict from name to `Kernel`.

A kernel is a function `forward(call, hooks, **params) -> KernelOutput`. Parameters are
given from Python (`attach(model, kernel="eager", block_size=256)`) or from the command
line as one spec string (`eager:block_size=256`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from . import block_topk, chunked, eager, flexprefill, hybrid, linear, sdpa, streaming, window
from . import stats as stats_kernel
from ..distributed import ring as ring_kernels


@dataclass(frozen=True)
class Kernel:
    """A registered kernel: its function, whether it exposes probabilities, one line of doc."""

    forward: Callable
    exposes_probs: bool
    summary: str

    def params(self) -> dict[str, object]:
        """The kernel's parameters and their defaults (everything after `call, hooks`)."""
        sig = inspect.signature(self.forward)
        return {n: p.default for n, p in list(sig.parameters.items())[2:]}


KERNELS: dict[str, Kernel] = {
    "eager": Kernel(eager.forward, True, "exact reference; exposes scores and probabilities; query blocks"),
    "sdpa": Kernel(sdpa.forward, False, "PyTorch fused scaled-dot-product attention (dense baseline)"),
    "chunked": Kernel(chunked.forward, False, "exact; query x key blocks with running max / log-sum-exp; O(n) memory"),
    "streaming": Kernel(streaming.forward, False, "StreamingLLM: attention sinks + sliding window (sinks=0: plain window)"),
    "block_topk": Kernel(block_topk.forward, False, "block-sparse: pooled-score top-k key blocks + sink + local (MoBA/Quest)"),
    "flexprefill": Kernel(flexprefill.forward, False, "FlexPrefill: per head query-aware or vertical-slash blocks reaching mass gamma"),
    "window": Kernel(window.forward, False, "neighborhood / strided / blocked windows (Generalized Neighborhood Attention)"),
    "stats": Kernel(stats_kernel.forward, True, "eager on each query block's visible keys; streams them to on_block observers"),
    "ring": Kernel(ring_kernels.ring_kernel, False, "sequence-parallel exact attention over torch.distributed, contiguous shards"),
    "striped": Kernel(ring_kernels.striped_kernel, False, "ring attention on striped / zigzag shards (causal load balance)"),
    "linear": Kernel(linear.forward, False, "linear attention (elu / relu / performer / hedgehog maps); chunked prefill, O(1) decode state"),
    "hybrid": Kernel(hybrid.forward, False, "LoLCATs: softmax on the last `window` keys + linear attention before them"),
}


# Parameter values under which a kernel's output at a position depends on LATER tokens (the
# papers' block-pooled selections). Benchmarks do not score such runs on their own prefill.
LEAKY: dict[str, dict[str, tuple]] = {
    "block_topk": {"pool": ("mean",)},
    "flexprefill": {"estimate": ("last_block",)},
}


def leaky(name: str, params: dict) -> bool:
    """Whether kernel `name` with `params` lets outputs depend on tokens after them."""
    return any(params.get(key) in values for key, values in LEAKY.get(name, {}).items())


def get_kernel(name: str) -> Kernel:
    """The kernel called `name`; an unknown name is an error that lists the valid ones."""
    from ..errors import SpecError

    if name not in KERNELS:
        raise SpecError(f"unknown kernel {name!r}; valid kernels: {', '.join(sorted(KERNELS))}")
    return KERNELS[name]


def check_params(name: str, params: dict) -> dict:
    """Validate kernel parameters by name and by type (from the signature); returns them unchanged."""
    from ..errors import SpecError
    from ..spec import allowed_types, check_type, type_names

    valid = get_kernel(name).params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        listed = ", ".join(valid) or "none"
        raise SpecError(f"kernel {name!r} has no parameter(s) {unknown}; its parameters: {listed}")
    sig = inspect.signature(get_kernel(name).forward).parameters
    for key, value in params.items():
        types = allowed_types(sig[key].annotation, sig[key].default)
        if not check_type(value, types):
            raise SpecError(f"kernel {name!r}: {key}={value!r} is not {type_names(types)} "
                            f"(default {sig[key].default!r})")
    return params


def parse_spec(spec: str) -> tuple[str, dict]:
    """'name:a=1,b=2.5' -> ('name', {'a': 1, 'b': 2.5}), validated against the registry."""
    from ..spec import split_spec

    name, params = split_spec(spec, "kernel parameter")
    return name, check_params(name, params)
