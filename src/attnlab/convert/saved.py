"""Saved feature maps: `feature_maps.safetensors` + `convert_config.json` in one directory.

The json records the feature map, window, shapes, the base model's hash and the hash of
every converted attention module's weights, the recipe (transfer settings), the data's
hashes and the measured perplexities. `load` refuses a directory made for another model:
with `model=` by the whole model's hash; in any case the kernels compare each attention
module's weights with the recorded hash on first use (`verify`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..errors import InputError, SpecError
from .maps import Maps

WEIGHTS, CONFIG = "feature_maps.safetensors", "convert_config.json"
FORMAT = 1


def module_hash(module: torch.nn.Module) -> str:
    """sha256 of one module's parameters (names, shapes, bytes)."""
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters()):
        t = p.detach().float().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def model_hash(model) -> str:
    from ..distributed.comm import model_hash as full_hash

    return full_hash(model)


def save(maps: Maps, out, model=None, recipe: dict | None = None, data: dict | None = None,
         results: dict | None = None) -> Path:
    """Write `maps` to directory `out` (created); returns its path. model: the base model (hashed)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in maps.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    meta = dict(maps.meta)
    if model is not None:
        meta["base_model_hash"] = model_hash(model)
        meta["base_model"] = getattr(model.config, "_name_or_path", "") or type(model).__name__
    meta.update(format=FORMAT, feature_map=maps.kind, window=maps.window, features=maps.features, seed=maps.seed,
                shapes={k: list(v) for k, v in maps.shapes.items()}, recipe=recipe or meta.get("recipe", {}),
                data=data or meta.get("data", {}), results=results or meta.get("results", {}))
    (out / CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True))
    maps.meta = meta
    return out


def load(path, model=None) -> Maps:
    """The Maps saved in directory `path`; with `model`, refuses if its hash differs from the base's."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise InputError(f"{path} holds no converted feature maps (need {CONFIG} and {WEIGHTS})")
    meta = json.loads((path / CONFIG).read_text())
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: feature-map format {meta.get('format')!r}, this attnlab reads {FORMAT}")
    maps = Maps(meta["feature_map"], meta["window"], {k: tuple(v) for k, v in meta["shapes"].items()},
                meta.get("features"), meta.get("seed", 0))
    maps.load_state_dict(load_file(str(path / WEIGHTS)))
    maps.meta = meta
    if model is not None and meta.get("base_model_hash") and model_hash(model) != meta["base_model_hash"]:
        raise SpecError(f"{path} was converted from another model (base hash {meta['base_model_hash'][:12]}, "
                        f"this model {model_hash(model)[:12]})")
    return maps.requires_grad_(False).eval()


_LOADED: dict = {}


def load_cached(path: str) -> Maps:
    """`load(path)` once per resolved path (the kernels are given the path as a spec string)."""
    key = str(Path(path).resolve())
    if key not in _LOADED:
        _LOADED[key] = load(key)
    return _LOADED[key]


def verify(maps: Maps, call) -> None:
    """Refuse maps whose recorded module hash differs from the call's attention module (checked once)."""
    from .maps import site_key

    recorded = maps.meta.get("modules", {})
    key = site_key(call.site)
    if call.module is None or key not in recorded or (key, id(call.module)) in maps.verified:
        return
    if module_hash(call.module) != recorded[key]:
        raise SpecError(f"the feature maps for {call.site} were trained on another model's attention weights "
                        f"(module hash {recorded[key][:12]} != {module_hash(call.module)[:12]})")
    maps.verified.add((key, id(call.module)))
