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


def split_spec(spec: str) -> tuple[str, dict]:
    """'name:a=1,b=x' -> ('name', {'a': 1, 'b': 'x'}) without validation."""
    from ..spec import split_spec as split

    return split(spec, "modifier parameter")


def parse_modifier(spec: str, model=None, tokenizer=None):
    """Build the modifier that `spec` describes; unknown names and keys list the valid ones."""
    from . import factory

    name, params = split_spec(spec)
    make = factory(name)
    valid = list(inspect.signature(make).parameters)
    if "kind" in params or "top" in params:
        params["heads"] = _kind(name, params, model, tokenizer)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"modifier {name!r} has no parameter(s) {unknown}; its parameters: "
                         f"{', '.join(valid + ['kind', 'top'])}")
    try:
        return make(**params)
    except TypeError as exc:
        raise ValueError(f"modifier {name!r}: {exc}") from None


def _kind(name: str, params: dict, model, tokenizer):
    from .kinds import kind_heads

    kind = params.pop("kind", None)
    top = params.pop("top", 10)
    if kind is None:
        raise ValueError(f"modifier {name!r}: top= needs kind= (a head kind to rank heads by)")
    if "heads" in params or "layers" in params:
        raise ValueError(f"modifier {name!r}: give kind= or heads=/layers=, not both")
    if model is None or tokenizer is None:
        raise ValueError(f"modifier {name!r}: kind={kind} needs a model and tokenizer to score heads")
    return kind_heads(model, tokenizer, kind, int(top))
