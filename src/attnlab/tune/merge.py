"""Fold a lofit / gates adapter into the base weights: a plain Hugging Face model folder.

Head h's edited output z_h' = (1 + g_m a_h) * z_h + g_a v_h enters o_proj (y = W z + b)
through W's input columns C_h = [h Dv, (h + 1) Dv), so
    W[:, C_h] <- W[:, C_h] * (1 + g_m a_h)     (a scaling of the input columns)
    b         <- b + W[:, C_h] (g_a v_h)        (the offset becomes o_proj's bias)
with the gates g at their evaluation value (1 without gates). Where the architecture puts
no bias on o_proj, the offset needs one: models whose config has `attention_bias`
(Llama, Gemma 1-3, Granite, OLMo, ...) get it switched on, with zero q/k/v biases, so plain
transformers loads the folder; architectures without such a switch (Qwen2: q/k/v bias but
none on o_proj; Mistral) can merge scalings only, and merging offsets there is an error.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..errors import OptionError

MERGEABLE = ("lofit", "gates")


def _o_projs(model) -> dict:
    from .head_lora import _attention_modules

    return {key: m.o_proj for key, m in _attention_modules(model).items()}


def _edits(adapter):
    """Per chosen head: (stack, layer, head, multiplier [Dv] or None, offset [Dv] or None), at evaluation."""
    mod = adapter.module
    mod.eval()
    with torch.no_grad():
        g = mod.gate_values()  # [n, 2] or None
        for i, (s, l, h) in enumerate(mod.heads):
            mult = None if mod.scale is None else 1 + (1 if g is None else g[i, 0]) * mod.scale[i].expand(mod.dv)
            off = None if mod.offset is None else (1 if g is None else g[i, 1]) * mod.offset[i]
            yield s, l, h, mult, off


def _enable_bias(model) -> None:
    """Switch on config.attention_bias and give every q/k/v/o projection a (zero) bias."""
    cfg = model.config
    if not hasattr(cfg, "attention_bias"):
        raise OptionError(f"cannot merge offsets into {type(model).__name__}: o_proj has no bias and the config has "
                          "no attention_bias switch (merge works for Llama, Gemma, Granite, OLMo-style configs)")
    cfg.attention_bias = True
    from .head_lora import PROJ, _attention_modules

    for attn in _attention_modules(model).values():
        for name in PROJ.values():
            proj = getattr(attn, name)
            if proj.bias is None:
                proj.bias = torch.nn.Parameter(torch.zeros(proj.out_features, dtype=proj.weight.dtype))


def merged_model(adapter, model):
    """A copy of `model` with the adapter's edits folded into o_proj (the original is untouched)."""
    if adapter.method not in MERGEABLE:
        raise OptionError(f"merge folds {' / '.join(MERGEABLE)} adapters into o_proj; {adapter.method!r} "
                          "is not a head-output edit")
    from .saved import check_base

    check_base(adapter, model)
    out = copy.deepcopy(model)
    edits = list(_edits(adapter))
    if any(off is not None and float(off.abs().max()) > 0 for *_, off in edits):
        if any(o.bias is None for o in _o_projs(out).values()):
            _enable_bias(out)
    projs = _o_projs(out)
    with torch.no_grad():
        for s, l, h, mult, off in edits:
            W = projs[(s, l)].weight  # [hidden, H * Dv]
            cols = slice(h * len(mult if mult is not None else off), (h + 1) * len(mult if mult is not None else off))
            if off is not None:
                projs[(s, l)].bias += (W[:, cols].float() @ off.float()).to(W.dtype)
            if mult is not None:
                W[:, cols] *= mult.to(W.dtype)[None]
    return out


def merge(adapter, model, folder, tokenizer=None) -> Path:
    """Write the merged model (and tokenizer) as a plain Hugging Face folder; returns it."""
    folder = Path(folder)
    out = merged_model(adapter, model)
    out.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder
