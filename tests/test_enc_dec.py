"""Encoder-decoder models end to end: tiny T5 and BART saved to folders, through the CLI.

Every stack gets statistics (the decoder reads the text shifted right), heads.csv has a
stack column with encoder / decoder / decoder.cross, the report has a grid block per
stack, explain and bench refuse clearly, eval/steer address cross-attention heads.
"""

from __future__ import annotations

import csv
import json
import re

import pytest
from typer.testing import CliRunner

from attnlab.cli import build_app
from encdec_models import TEXT, save

runner = CliRunner()
STACKS = ["encoder", "decoder", "decoder.cross"]


@pytest.fixture(scope="module", params=["t5", "bart"])
def folder(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    save(request.param, root / "model")
    (root / "own.txt").write_text(TEXT, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def inspected(folder):
    out = folder / "out"
    result = runner.invoke(build_app(), ["inspect", "--model", str(folder / "model"), "--text", str(folder / "own.txt"),
                                         "--out", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_inspect_gives_every_stack_statistics(inspected):
    out, output = inspected
    rows = list(csv.DictReader((out / "heads.csv").open()))
    assert list(rows[0])[:3] == ["stack", "layer", "head"]
    assert list(dict.fromkeys(r["stack"] for r in rows)) == STACKS and len(rows) == 3 * 2 * 4
    for r in rows:
        assert float(r["entropy"]) > 0 and r["induction"] == ""  # probes skipped: not a decoder-only LM
        cross = r["stack"] == "decoder.cross"
        assert (r["prev_token"] == "" and r["local_mass"] == "") == cross  # undefined without shared positions
        assert r["kind"] in (("sink", "global") if cross else ("sink", "local", "global", "previous-token"))
    doc = json.loads((out / "heads.json").read_text())
    assert doc["stacks"] == STACKS and doc["n_tokens"] == len(doc["tokens"]) == len(TEXT.split()) + 1
    dec = doc["stack_tokens"]["decoder"]  # teacher forcing: the start token, then the text shifted right
    assert dec[1:] == doc["tokens"][:-1]
    top = next(h for h in doc["heads"] if h["stack"] == "decoder.cross")["top_received"][0]
    assert doc["tokens"][top["position"]] == top["token"]  # cross keys are encoder tokens
    assert "probes skipped" in doc["notes"][0] and "probes skipped" in output
    data = json.loads(output[output.index("{"):])
    assert list(data["stacks"]) == STACKS and data["stacks"]["decoder.cross"]["kinds"]


def test_report_has_a_grid_block_per_stack(inspected):
    out, _ = inspected
    page = (out / "report.html").read_text(encoding="utf-8")
    payload = json.loads(re.search(r'id="attnlab-data">(.*?)</script>', page, re.S).group(1))
    views = payload["views"]
    assert set(views["stacks"]) == set(STACKS)
    assert views["stacks"]["decoder.cross"] == {"causal": False, "queries": "decoder", "keys": "input"}
    assert {h["stack"] for h in views["heads"]} == set(STACKS)  # map heads from every stack, cross too
    assert views["rollout"]["stack"] == "encoder"
    assert payload["stack_tokens"]["decoder"][1:] == payload["tokens"][:-1]
    assert "cross-attention rows are decoder tokens" in page.lower()


def test_map_heads_need_a_stack(folder):
    args = ["inspect", "--model", str(folder / "model"), "--text", str(folder / "own.txt"), "--out",
            str(folder / "maps")]
    bad = runner.invoke(build_app(), args + ["--map-heads", "1.0"])
    assert bad.exit_code == 2 and "STACK:LAYER.HEAD" in bad.output and not (folder / "maps").exists()
    good = runner.invoke(build_app(), args + ["--map-heads", "decoder.cross:1.0", "--format", "json", "--png"])
    assert good.exit_code == 0, good.output
    data = json.loads(good.output[good.output.index("{"):])
    assert data["report"]["heads"] == ["decoder.cross:1.0"]
    assert (folder / "maps" / "grid_decoder-cross_sink_mass.png").exists()
    assert not (folder / "maps" / "grid_decoder-cross_prev_token.png").exists()


def test_explain_and_bench_refuse_clearly(folder):
    (folder / "ctx.txt").write_text("the fox runs far away .\n\nthe dog sleeps .\n", encoding="utf-8")
    for args in (["explain", "--context", str(folder / "ctx.txt"), "--question", "who runs ?", "--answer", "fox"],
                 ["bench"]):
        result = runner.invoke(build_app(), args + ["--model", str(folder / "model")])
        assert result.exit_code == 2
        assert "decoder-only causal LM" in result.output and "encoder-decoder" in result.output
        assert "Traceback" not in result.output


def test_eval_steers_a_cross_attention_head(folder):
    task = folder / "task.json"
    examples = [{"input": "the quick brown fox", "target_scores": {"jumps": 1, "sleeps": 0}},
                {"input": "the lazy dog", "target_scores": {"sleeps": 1, "sings": 0}},
                {"input": "a bird", "target_scores": {"sings": 1, "waits": 0}}]
    task.write_text(json.dumps({"name": "tiny", "examples": examples}))
    base = ["eval", "--model", str(folder / "model"), "--task", str(task), "--format", "json"]
    result = runner.invoke(build_app(), base + ["--modify", "scale:factor=0.0,heads=decoder.cross:0:1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["n"] == 3 and data["modifiers"] == ["scale:factor=0.0,heads=decoder.cross:0:1"]
    short = runner.invoke(build_app(), base + ["--modify", "scale:factor=0.0,heads=0:1"])
    assert short.exit_code == 2 and "several attention stacks" in short.output


def test_explain_refuses_an_encoder_before_loading():
    import attnlab.models as models
    from attnlab.explain.run import check_model
    from attnlab.errors import OptionError

    if not models.EMBEDDED["minilm-l6"].installed:
        pytest.skip("minilm-l6 is not installed")
    with pytest.raises(OptionError, match="encoder"):
        check_model("minilm-l6")


def test_encoder_and_layout_stacks():
    import torch

    from archs import ARCHS
    from attnlab.layout import layout
    from attnlab.observe.kinds import head_kinds
    from encdec_models import tokenizer

    bert = ARCHS["bert"].build()
    df = head_kinds(bert, tokenizer(), TEXT, probes=True)  # probes skipped: an encoder
    assert set(df["stack"]) == {"encoder"} and df["induction"].isna().all() and "encoder" in df.attrs["notes"][0]
    t5 = ARCHS["t5"].build()
    with torch.no_grad():
        lay = layout(t5, tokenizer())
    assert [(l["stack"], l["layer"]) for l in lay["layers"]] == [
        ("encoder", 0), ("encoder", 1), ("decoder", 0), ("decoder.cross", 0), ("decoder", 1), ("decoder.cross", 1)]
