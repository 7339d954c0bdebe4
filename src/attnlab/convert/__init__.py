"""Convert a pretrained softmax model to linear or hybrid attention (Hedgehog / LoLCATs transfer).

Nothing is imported until used:
    Maps, LayerMaps, FeatureMap     feature maps (convert.maps)
    StateCache                      the O(1)-memory decode cache (convert.cache)
    transfer, evaluate, eval_ids  attention transfer, held-out perplexity (convert.train)
    save, load                      safetensors + json (convert.saved)
    lora_stage                      LoRA on q/k/v/o, next-token loss, merged (convert.lora)
"""

from __future__ import annotations

from .._lazy import exports as _exports

_WHERE = {"Maps": "maps", "LayerMaps": "maps", "FeatureMap": "maps", "KINDS": "maps", "StateCache": "cache",
          "transfer": "train", "evaluate": "train", "eval_ids": "train", "build_maps": "train",
          "save": "saved", "load": "saved", "lora_stage": "lora"}

__getattr__ = _exports(__name__, {name: f"{__name__}.{module}" for name, module in _WHERE.items()})
