"""The tuning methods: a plain dict from name to the builder of its trainable module.

Each builder takes (model, sites, heads, options) and returns an `Adapter` whose recipe
rebuilds the same (untrained) module, so `load()` can put saved values back into it.
"""

from __future__ import annotations

from ..errors import OptionError
from .adapter import Adapter


def _sites_json(sites: dict) -> list:
    return [[s, l, *v] for (s, l), v in sites.items()]


def sites_from_json(rows) -> dict:
    return {(r[0], int(r[1])): tuple(int(x) for x in r[2:]) for r in rows}


def _recipe(method, sites, heads, **options) -> dict:
    return {"method": method, "sites": _sites_json(sites), "heads": [list(h) for h in heads], **options}


def lofit_scales(model, sites, heads, options) -> Adapter:
    """LoFiT step 1: a scalar scaling a_h on every head of `heads` (no offsets)."""
    from .edits import HeadEdit

    return Adapter("lofit_scales", HeadEdit(heads, sites, scale=True, offset=False),
                   _recipe("lofit_scales", sites, heads))


def lofit(model, sites, heads, options) -> Adapter:
    """LoFiT step 2: offsets v_h (and with keep_scale, scalings a_h) on the chosen heads."""
    from .edits import HeadEdit

    keep = bool(options.get("keep_scale", False))
    return Adapter("lofit", HeadEdit(heads, sites, scale=keep, offset=True), _recipe("lofit", sites, heads, keep_scale=keep))


def gates(model, sites, heads, options) -> Adapter:
    """JoLA: [Dv] scaling + [Dv] offset per head, each behind a Hard-Concrete gate."""
    from .edits import HeadEdit
    from .gates import HardConcrete

    mod = HeadEdit(heads, sites, scale=True, offset=True, vector_scale=True, gates=HardConcrete((len(heads), 2)))
    return Adapter("gates", mod, _recipe("gates", sites, heads))


def head_lora(model, sites, heads, options) -> Adapter:
    from .head_lora import HeadLoRA

    rank, targets = int(options.get("rank", 8)), options.get("targets", "q,k,v,o")
    return Adapter("head_lora", HeadLoRA(model, heads, sites, rank, targets),
                   _recipe("head_lora", sites, heads, rank=rank, targets=targets))


def _peft(kind):
    def build(model, sites, heads, options) -> Adapter:
        from .peft_baseline import PeftModule

        rank, targets = int(options.get("rank", 8)), options.get("targets", "q,v")
        mod = PeftModule(kind, targets, rank)
        mod.install(model)[0].remove()  # create the layers now, so the optimizer sees them
        return Adapter(kind, mod, _recipe(kind, sites, [], rank=rank, targets=targets))
    return build


BUILDERS = {"lofit_scales": lofit_scales, "lofit": lofit, "gates": gates, "head_lora": head_lora,
            "lora": _peft("lora"), "ia3": _peft("ia3")}
METHODS = ("lofit", "gates", "head_lora", "lora", "ia3")  # what a user trains (lofit runs lofit_scales first)


def build(method: str, model, sites: dict, heads, **options) -> Adapter:
    """A fresh (identity) adapter of `method` on `heads` of `model`."""
    if method not in BUILDERS:
        raise OptionError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    adapter = BUILDERS[method](model, sites, [tuple(h) for h in heads], options)
    adapter.module.eval()  # evaluation mode (deterministic gates) until the loop trains it
    return adapter


def rebuild(recipe: dict, model) -> Adapter:
    """The untrained adapter a saved recipe describes, on `model`."""
    options = {k: v for k, v in recipe.items() if k not in ("method", "sites", "heads")}
    return build(recipe["method"], model, sites_from_json(recipe["sites"]), recipe["heads"], **options)
