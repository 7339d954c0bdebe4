"""Models that do not read text, or come without a tokenizer: one clear line, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import archs
import tiny
from attnlab.cli import build_app

runner = CliRunner()


def _cli(args):
    return runner.invoke(build_app(), [str(a) for a in args])


@pytest.mark.parametrize("name, reads", [("vit", "pixel_values"), ("whisper", "input_features")])
def test_inspect_refuses_vision_and_speech_models_before_loading(tmp_path, name, reads):
    folder = tmp_path / name
    archs.ARCHS[name].build().save_pretrained(folder)
    text = tmp_path / "own.txt"
    text.write_text("To be, or not to be.")
    result = _cli(["inspect", "--model", folder, "--text", text, "--out", tmp_path / "out"])
    assert result.exit_code == 2, result.output
    assert reads in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_text_model_folder_without_a_tokenizer_is_a_clear_error(tmp_path):
    folder = tmp_path / "llama"
    tiny.llama().save_pretrained(folder)
    text = tmp_path / "own.txt"
    text.write_text("To be, or not to be.")
    result = _cli(["inspect", "--model", folder, "--text", text, "--out", tmp_path / "out", "--no-probes"])
    assert result.exit_code == 2, result.output
    assert "no usable tokenizer" in result.output and "Traceback" not in result.output
