"""`attnlab inspect` writes report.html (and PNGs with --png) next to heads.json."""

import json

import pytest
from typer.testing import CliRunner

from attnlab.cli import build_app

runner = CliRunner()


@pytest.mark.real
def test_inspect_writes_the_report_and_pngs(tmp_path):
    result = runner.invoke(build_app(), ["inspect", "--no-probes", "--max-tokens", "64", "--out", str(tmp_path),
                                         "--png", "--map-heads", "3.1,20.4", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert data["report"]["heads"] == ["3.1", "20.4"]
    page = (tmp_path / "report.html").read_text()
    doc = json.loads((tmp_path / "heads.json").read_text())
    assert doc["n_tokens"] == 64 and "--png --map-heads 3.1,20.4" in doc["command"]
    assert "smollm2-135m" in page and "64 tokens" in page
    assert sorted(p.name for p in tmp_path.glob("*.png"))[:2] == ["grid_entropy.png", "grid_entropy_norm.png"]
    assert str(tmp_path / "kinds.png") in data["files"]

