"""A KV-cache policy from a spec string: `snapkv:ratio=0.5`, `adaptive:policy=h2o,budget=512`, ...

    name          one of POLICIES (an eviction scorer), `adaptive` (AdaKV wrapper, `policy=` its
                  scorer), a selection rule of `kv.selection`, or `none` (cache left whole)
    ratio=r       fraction of the compressible tokens evicted after prefill, in [0, 1)
    budget=N      tokens kept per head after prefill (instead of a ratio)
    keep_last=N   the last N prompt tokens (the question) are always kept; default 0
    decode_budget=N   while decoding, evict down to N tokens per head whenever a head holds
                  N + decode_every (default 32) tokens (the policy's decode scores, `kv.decode`)
    alpha=a       adaptive only: each head keeps at least a * its even share (default 0.2)
    other keys    the scorer's own parameters (snapkv: window, pool; streaming: sinks; ...)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from ..errors import SpecError

COMMON = {"ratio": (float, int), "budget": (int,), "keep_last": (int,), "decode_budget": (int,),
          "decode_every": (int,)}


@dataclass(frozen=True)
class KVPolicy:
    """A parsed policy; `scorer` is the eviction scorer's name ('' for `none` / selection rules)."""

    name: str
    scorer: str = ""
    scorer_params: dict = field(default_factory=dict)
    ratio: float | None = None
    budget: int | None = None
    keep_last: int = 0
    decode_budget: int | None = None
    decode_every: int = 32
    adaptive: bool = False
    alpha: float = 0.2
    selection: str = ""
    selection_params: dict = field(default_factory=dict)

    @property
    def evicts(self) -> bool:
        return bool(self.scorer) and (self.ratio is not None or self.budget is not None)

    def __str__(self) -> str:
        return self.name


def _check_params(owner: str, fn, params: dict, choices: dict | None = None) -> dict:
    skip = 3 if owner in _selection_names() else 1  # after `call` (selection rules: call, layer, state)
    sig = list(inspect.signature(fn).parameters.items())[skip:]
    valid = {n: p.default for n, p in sig}
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise SpecError(f"kv policy {owner!r} has no parameter(s) {unknown}; its parameters: "
                        f"{', '.join(list(COMMON) + list(valid)) or 'none'}")
    for key, value in params.items():
        want = type(valid[key])
        if not isinstance(value, want) or isinstance(value, bool) != isinstance(valid[key], bool):
            raise SpecError(f"kv policy {owner!r}: {key}={value!r} is not {want.__name__} (default {valid[key]!r})")
        allowed = (choices or {}).get(key)
        if allowed is not None and value not in allowed:
            raise SpecError(f"kv policy {owner!r}: {key}={value!r}; valid: {', '.join(allowed)}")
    return params


def _selection_names() -> tuple:
    from .selection import SELECTIONS

    return tuple(SELECTIONS)


def _common(name: str, params: dict) -> dict:
    out = {}
    for key, types in COMMON.items():
        if key in params:
            value = params.pop(key)
            if not isinstance(value, types) or isinstance(value, bool):
                raise SpecError(f"kv policy {name!r}: {key}={value!r} must be a number")
            out[key] = float(value) if key == "ratio" else value
    if "ratio" in out and "budget" in out:
        raise SpecError(f"kv policy {name!r}: give ratio= or budget=, not both")
    return out


def parse(spec: "str | KVPolicy") -> KVPolicy:
    """The KVPolicy of a spec string (an unknown name or parameter is a SpecError listing the valid ones)."""
    from ..spec import split_spec
    from .scorers import CHOICES, SCORERS
    from .selection import SELECTIONS

    if isinstance(spec, KVPolicy):
        return spec
    name, params = split_spec(spec, "kv parameter")
    common = _common(name, params)
    if name == "none":
        if params or common:
            raise SpecError(f"kv policy 'none' takes no parameter(s) {sorted(params) + sorted(common)}")
        return KVPolicy("none")
    if name in SELECTIONS:
        if common:
            raise SpecError(f"selection rule {name!r} evicts nothing: it takes no {sorted(common)} "
                            f"(its own parameters: {', '.join(list(inspect.signature(SELECTIONS[name]).parameters)[3:])})")
        return KVPolicy(name, selection=name, selection_params=_check_params(name, SELECTIONS[name], params))
    adaptive = name == "adaptive"
    alpha = float(params.pop("alpha", 0.2)) if adaptive else 0.2
    scorer = str(params.pop("policy", "snapkv")) if adaptive else name
    valid = sorted(["none", "adaptive", *SCORERS, *SELECTIONS])
    if scorer not in SCORERS:
        raise SpecError(f"unknown kv policy {scorer!r}; valid policies: {', '.join(valid)}")
    if "ratio" not in common and "budget" not in common and "decode_budget" not in common:
        raise SpecError(f"kv policy {name!r} needs ratio= (fraction evicted), budget= (tokens kept) "
                        "or decode_budget=")
    if adaptive and not 0.0 <= alpha <= 1.0:
        raise SpecError(f"adaptive: alpha must be in [0, 1], got {alpha}")
    policy = KVPolicy(name, scorer, _check_params(scorer, SCORERS[scorer], params, CHOICES.get(scorer)), adaptive=adaptive,
                      alpha=alpha, **common)
    if policy.ratio is not None:
        from .select import row_budgets
        import torch

        row_budgets(torch.tensor([1]), policy.ratio, None, 0)  # validates the range
    return policy
