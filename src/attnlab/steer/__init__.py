"""Steer: training-free interventions on chosen attention heads.

Each modifier lives in its own file and is built by a factory of the same name:

    from attnlab import attach, steer
    with attach(model, kernel="eager", modify=[steer.sink_scale(0.5, layers=range(6))]):
        model(**inputs)

Output-level modifiers (mask, scale) work with every kernel, sdpa included; the others
change scores or probabilities and need a kernel that exposes them (eager).
`parse_modifier("sink_scale:factor=0.5,layers=0-5")` builds one from the CLI's text form.
(Importing attnlab.steer imports torch; `import attnlab` alone does not.)
"""

from __future__ import annotations

from .calibrate import calibrate
from .emphasize import emphasize, span_tokens
from .heads import Heads, select
from .identity_mix import identity_mix
from .mask import mask
from .recency import recency
from .scale import scale
from .sink_scale import sink_scale
from .temperature import temperature

MODIFIERS = {
    "mask": mask,
    "scale": scale,
    "temperature": temperature,
    "sink_scale": sink_scale,
    "calibrate": calibrate,
    "emphasize": emphasize,
    "identity_mix": identity_mix,
    "recency": recency,
}


def factory(name: str):
    """The factory function of modifier `name`; an unknown name lists the valid ones."""
    if name not in MODIFIERS:
        raise ValueError(f"unknown modifier {name!r}; valid modifiers: {', '.join(sorted(MODIFIERS))}")
    return MODIFIERS[name]


def parse_modifier(spec: str, model=None, tokenizer=None):
    """Build a modifier from text, e.g. "sink_scale:factor=0.5,layers=0-5" (see `spec`)."""
    from .spec import parse_modifier as parse

    return parse(spec, model, tokenizer)


__all__ = sorted(MODIFIERS) + ["Heads", "MODIFIERS", "factory", "parse_modifier", "select", "span_tokens"]
