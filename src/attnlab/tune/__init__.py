"""Head-level fine-tuning: LoFiT, JoLA-style gates, per-head LoRA, and PEFT baselines.

    adapter = attnlab.tune.train(model, tok, task="sports_understanding", method="lofit", heads="3%")
    with attnlab.attach(model, modify=[adapter]): ...
    adapter.save("out/"); adapter = attnlab.tune.load("out/", model)

Nothing is imported until used.
"""

from __future__ import annotations

from .._lazy import exports as _exports

_EXPORTS = {
    "train": "attnlab.tune.api",
    "load": "attnlab.tune.saved",
    "model_hash": "attnlab.tune.saved",
    "BaseModelMismatch": "attnlab.tune.saved",
    "Adapter": "attnlab.tune.adapter",
    "METHODS": "attnlab.tune.methods",
    "build": "attnlab.tune.methods",
    "task_splits": "attnlab.tune.data",
    "merge": "attnlab.tune.merge",
    "fit": "attnlab.tune.loop",
    "LoopConfig": "attnlab.tune.loop",
}

__all__ = sorted(_EXPORTS)

__getattr__ = _exports(__name__, _EXPORTS)
