"""The CLI: listing commands, JSON output, clean errors."""

import json

from typer.testing import CliRunner

from attnlab.cli import build_app

runner = CliRunner()


def test_kernels_json_lists_registry():
    result = runner.invoke(build_app(), ["kernels", "--format", "json"])
    assert result.exit_code == 0, result.output
    names = [k["name"] for k in json.loads(result.stdout)]
    assert {"eager", "sdpa"} <= set(names)


def test_models_json():
    result = runner.invoke(build_app(), ["models", "--format", "json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows][:3] == ["smollm2-135m", "gemma3-270m", "minilm-l6"]
    assert rows[0]["default"] and rows[0]["context"] == 8192


def test_unknown_model_is_a_clean_error():
    result = runner.invoke(build_app(), ["inspect", "--model", "nope"])
    assert result.exit_code == 2
    assert "unknown model 'nope'" in result.output
    assert "Traceback" not in result.output
