"""The text form of a modifier, as the CLI's `--modify` takes it.

    name:key=value,key=value        e.g.  sink_scale:factor=0.5,layers=0-5
                                          calibrate:factor=0.4,threshold=5,heads=3:1;5:0-2
                                          mask:kind=retrieval,top=10

Keys are the factory's parameters (see `attnlab.steer.<name>`). Heads are chosen with
`layers=` (all / N / A-B;C), `heads=` (layer:head pairs joined by ';') or `kind=` (a head
kind from the taxonomy, `top=` the number of highest-scoring heads, default 10), which
needs the model and tokenizer to score the heads.
"""

from __future__ import annotations

import inspect

from ..errors import SpecError


def split_spec(spec: str) -> tuple[str, dict]:
    """'name:a=1,b=x' -> ('name', {'a': 1, 'b': 'x'}) without validation."""
    from ..spec import split_spec as split

    return split(spec, "modifier parameter")


def parse_modifier(spec: str, model=None, tokenizer=None):
    """Build the modifier that `spec` describes; unknown names and keys list the valid ones.

    kind= specs score the heads on `model`; without a model they are only checked
    (`check_modifier`), which is what the CLI does before loading one.
    """
    name, params = _checked(spec)
    if "kind" in params or "top" in params:
        params["heads"] = _kind(name, params, model, tokenizer)
    return _build(name, params)


def check_modifier(spec: str):
    """Raise SpecError for anything wrong with `spec` that can be told without a model:
    name, keys, value types, and for kind= specs the kind and top (heads scored later).
    Returns the modifier built without a model (kind= specs: on all heads, for its level)."""
    name, params = _checked(spec)
    params.pop("kind", None), params.pop("top", None)
    return _build(name, params)


def _checked(spec: str) -> tuple[str, dict]:
    """split_spec + the modifier's name, its keys and, for kind=/top=, their values."""
    from . import MODIFIERS
    from .kinds import KIND_SCORES

    name, params = split_spec(spec)
    if name not in MODIFIERS:
        raise SpecError(f"unknown modifier {name!r}; valid modifiers: {', '.join(sorted(MODIFIERS))}")
    valid = list(inspect.signature(MODIFIERS[name]).parameters)
    unknown = sorted(set(params) - set(valid) - {"kind", "top"})
    if unknown:
        raise SpecError(f"modifier {name!r} has no parameter(s) {unknown}; its parameters: "
                        f"{', '.join(valid + ['kind', 'top'])}")
    if "kind" in params or "top" in params:
        kind, top = params.get("kind"), params.get("top", 10)
        if kind is None:
            raise SpecError(f"modifier {name!r}: top= needs kind= (a head kind to rank heads by)")
        if kind not in KIND_SCORES:
            raise SpecError(f"modifier {name!r}: unknown head kind {kind!r}; valid kinds: {', '.join(KIND_SCORES)}")
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise SpecError(f"modifier {name!r}: top={top!r} must be an integer >= 1")
        if "heads" in params or "layers" in params:
            raise SpecError(f"modifier {name!r}: give kind= or heads=/layers=, not both")
    return name, params


def _build(name: str, params: dict):
    """The factory's modifier; its own checks on the values (TypeError / ValueError) become SpecError."""
    from . import MODIFIERS

    try:
        return MODIFIERS[name](**params)
    except TypeError as exc:
        raise SpecError(f"modifier {name!r}: {exc}") from None
    except ValueError as exc:  # the factories' own value checks (steer.common, steer.heads)
        raise SpecError(str(exc)) from None


def _kind(name: str, params: dict, model, tokenizer):
    from .kinds import kind_heads

    kind = params.pop("kind")
    top = params.pop("top", 10)
    if model is None or tokenizer is None:
        raise SpecError(f"modifier {name!r}: kind={kind} needs a model and tokenizer to score heads")
    return kind_heads(model, tokenizer, kind, int(top))
