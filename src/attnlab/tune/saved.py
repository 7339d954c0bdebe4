"""Saved adapters: load a folder back, refusing a base model other than the one it was trained on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..errors import InputError
from .adapter import WEIGHTS, Adapter, read_config


class BaseModelMismatch(InputError):
    """An adapter was loaded or attached onto a model other than its base model."""


def model_hash(model) -> str:
    """sha256 of every parameter and buffer (name, shape and float32 values), dtype-independent."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode() + str(tuple(t.shape)).encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_base(adapter: Adapter, model) -> None:
    """BaseModelMismatch unless `model` has the weights the adapter was trained on."""
    want = adapter.meta.get("base_hash")
    if want is None:
        return
    got = model_hash(model)
    if got != want:
        raise BaseModelMismatch(f"adapter trained on {adapter.meta.get('base_model', '?')} (weights sha256 "
                                f"{want[:12]}), but this model is {model.config._name_or_path or type(model).__name__} "
                                f"(sha256 {got[:12]}); load it onto its own base model")


def load(folder, model) -> Adapter:
    """The adapter saved in `folder`, rebuilt on `model` (its base model; checked by weight hash)."""
    from safetensors.torch import load_file

    from .methods import rebuild

    doc = read_config(folder)
    meta = {k: v for k, v in doc.items() if k not in ("method", "recipe", "heads")}
    shell = Adapter(doc["method"], torch.nn.Module(), doc["recipe"], meta)
    check_base(shell, model)
    adapter = rebuild(doc["recipe"], model)
    adapter.meta = meta
    state = load_file(str(Path(folder) / WEIGHTS))
    missing = set(adapter.trainable_state()) - set(state)
    if missing:
        raise InputError(f"{folder}: {WEIGHTS} lacks {sorted(missing)[:3]}")
    adapter.module.load_state_dict(state, strict=False)
    adapter.module.eval()
    adapter.verified = {id(model)}
    return adapter
