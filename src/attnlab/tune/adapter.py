"""`Adapter`: one trained head-level edit (or PEFT baseline), usable as an attnlab modifier.

`with attnlab.attach(model, modify=[adapter])` applies it: head edits (lofit, gates) act
through the output hook; adapters that must sit on projection modules (head_lora, PEFT)
have `install(model)`, which attach() calls and whose handles it removes on exit.
`adapter.meta` is what `adapter.json` records (method, heads, base model hash, splits,
hyper-parameters, accuracies).
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from ..errors import InputError

WEIGHTS, CONFIG = "adapter.safetensors", "adapter.json"


class Adapter:
    """A method name, its trainable module, the recipe that rebuilds it, and its metadata."""

    def __init__(self, method: str, module: nn.Module, recipe: dict, meta: dict | None = None):
        self.method, self.module, self.recipe = method, module, dict(recipe)
        self.meta = dict(meta or {})
        self.verified = set()  # ids of models whose weights matched meta["base_hash"]

    def output(self, call, out):  # out [B, Q, H, Dv]
        fn = getattr(self.module, "output", None)
        return out if fn is None else fn(call, out)

    def install(self, model) -> list:
        """Check the base model (once per model), then install hooks the module needs."""
        if self.meta.get("base_hash") and id(model) not in self.verified:
            from .saved import check_base

            check_base(self, model)
            self.verified.add(id(model))
        fn = getattr(self.module, "install", None)
        return [] if fn is None else fn(model)

    def parameters(self):
        return [p for p in self.trainable_state(params=True).values()]

    def trainable_state(self, params: bool = False) -> dict:
        """{name: tensor} of the learned values only (never a base-model weight)."""
        keep = getattr(self.module, "keeps", lambda name: True)
        items = self.module.named_parameters() if params else self.module.state_dict().items()
        return {k: v for k, v in items if keep(k)}

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def heads(self) -> list:
        return list(getattr(self.module, "heads", []))

    def describe(self) -> str:
        return f"{self.method} adapter ({self.num_trainable()} parameters)"

    def save(self, folder) -> Path:
        """Write folder/adapter.safetensors + folder/adapter.json; returns the folder."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().contiguous().cpu() for k, v in self.trainable_state().items()}
        save_file(state, str(folder / WEIGHTS))
        doc = {"method": self.method, "recipe": self.recipe, "heads": [list(h) for h in self.heads], **self.meta}
        (folder / CONFIG).write_text(json.dumps(doc, indent=2) + "\n")
        return folder


def read_config(folder) -> dict:
    """adapter.json of a saved adapter folder (InputError when missing or malformed)."""
    path = Path(folder) / CONFIG
    if not path.is_file() or not (Path(folder) / WEIGHTS).is_file():
        raise InputError(f"{folder}: not a saved attnlab adapter (needs {CONFIG} and {WEIGHTS})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
