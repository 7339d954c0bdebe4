"""PEFT baselines (LoRA, IA3) from the `peft` library itself, as attnlab adapters.

PEFT injects its layers by replacing the target modules; `PeftModule.install(model)` does
that for the duration of an attach() and its handle puts the original modules back (and
the parameters' requires_grad flags), so the model is unchanged afterwards. The injected
layers are kept, so their trained values survive between installs.
"""

from __future__ import annotations

from torch import nn

from ..errors import OptionError

LLAMA_NAMES = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj"}
IA3_TARGETS = (["k_proj", "v_proj", "down_proj"], ["down_proj"])  # the IA3 paper's Llama recipe


def peft_config(kind: str, targets: str = "q,v", rank: int = 8):
    """The peft config of 'lora' (on `targets`, e.g. 'q,v' or 'q,k,v,o') or 'ia3'."""
    from peft import IA3Config, LoraConfig

    if kind == "ia3":
        return IA3Config(target_modules=IA3_TARGETS[0], feedforward_modules=IA3_TARGETS[1])
    bad = [t for t in targets.split(",") if t not in LLAMA_NAMES]
    if bad:
        raise OptionError(f"--lora-targets: unknown {bad}; valid: {', '.join(LLAMA_NAMES)}")
    names = [LLAMA_NAMES[t] for t in targets.split(",")]
    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=names)


class PeftModule(nn.Module):
    """The injected PEFT layers of one model, keyed by module name ('.' -> '__')."""

    def __init__(self, kind: str, targets: str = "q,v", rank: int = 8):
        super().__init__()
        self.kind, self.targets, self.rank = kind, targets, rank
        self.layers = nn.ModuleDict()

    def keeps(self, name: str) -> bool:
        """Only PEFT's own weights are the adapter's (never the wrapped base layer's)."""
        return ("lora_" in name or "ia3_" in name) and "base_layer" not in name

    def install(self, model) -> list:
        """Inject (first time) or re-insert the PEFT layers into `model`; returns a restoring handle."""
        flags = {id(p): p.requires_grad for p in model.parameters()}
        had_cfg = hasattr(model, "peft_config")
        if len(self.layers) == 0:
            self._inject(model)
        originals = []
        for key, layer in self.layers.items():
            parent, attr = _parent(model, key.replace("__", "."))
            current = getattr(parent, attr)
            base = current.base_layer if current is layer else current
            layer.base_layer = base
            originals.append((parent, attr, base))
            setattr(parent, attr, layer)
        return [_Restore(model, originals, flags, had_cfg)]

    def _inject(self, model) -> None:
        from peft import inject_adapter_in_model

        before = {n for n, _ in model.named_modules()}
        inject_adapter_in_model(peft_config(self.kind, self.targets, self.rank), model)
        for name, module in model.named_modules():
            if name in before and hasattr(module, "base_layer") and name.split(".")[-1] != "base_layer":
                self.layers[name.replace(".", "__")] = module
        if not len(self.layers):
            raise OptionError(f"{self.kind}: no target module found in {type(model).__name__}")


def _parent(model, name: str):
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


class _Restore:
    """Handle: put the original modules back, restore requires_grad and drop peft's marker."""

    def __init__(self, model, originals, flags, had_cfg):
        self.model, self.originals, self.flags, self.had_cfg = model, originals, flags, had_cfg

    def remove(self) -> None:
        for parent, attr, base in self.originals:
            setattr(parent, attr, base)
        for p in self.model.parameters():
            p.requires_grad_(self.flags.get(id(p), p.requires_grad))
        if not self.had_cfg and hasattr(self.model, "peft_config"):
            delattr(self.model, "peft_config")
