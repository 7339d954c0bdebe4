"""`attnlab inspect`: heads.csv / heads.json schema, clean errors, no partial files."""

import csv
import json

import pytest
from typer.testing import CliRunner

from attnlab.cli import build_app
from attnlab.observe.export import HEAD_FIELDS, heads_document, write_heads

runner = CliRunner()
TOP = {"stack", "layer", "head", "entropy", "entropy_norm", "sink_mass", "prev_token", "self_mass", "mean_distance",
       "local_mass", "induction", "prev_token_probe", "retrieval", "retrieval_events", "kind", "top_received"}


def _json_out(result):
    return json.loads(result.stdout[result.stdout.index("{"):])


@pytest.mark.real
def test_inspect_prompt_writes_the_documented_schema(tmp_path):
    prompt = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"
    result = runner.invoke(build_app(), ["inspect", "--prompt", prompt, "--no-probes", "--out", str(tmp_path),
                                         "--format", "json"])
    assert result.exit_code == 0, result.output
    data = _json_out(result)
    doc = json.loads((tmp_path / "heads.json").read_text())
    assert {"model", "n_tokens", "kernel", "created", "command", "params", "tokens", "heads", "sinks"} <= set(doc)
    assert doc["model"] == "smollm2-135m" and doc["n_tokens"] == len(doc["tokens"]) == data["n_tokens"]
    assert "".join(doc["tokens"]) == prompt and "--no-probes" in doc["command"]
    assert len(doc["heads"]) == 270 and all(set(h) == TOP for h in doc["heads"])
    assert all(h["induction"] is None and h["kind"] in data["kinds"] for h in doc["heads"])
    top = doc["heads"][0]["top_received"][0]
    assert set(top) == {"position", "token", "value"} and doc["tokens"][top["position"]] == top["token"]
    assert doc["sinks"][0]["position"] == 0 and set(doc["sinks"][0]) == {"position", "token", "heads_fraction",
                                                                        "mean_received"}
    rows = list(csv.DictReader((tmp_path / "heads.csv").open()))
    assert len(rows) == 270 and tuple(rows[0]) == HEAD_FIELDS
    assert sum(data["kinds"].values()) == 270 and data["layout"]["kv_heads"] == 3


@pytest.mark.real
def test_text_longer_than_context_is_exit_2_without_files(tmp_path, hamlet):
    text = tmp_path / "hamlet.txt"
    text.write_text(hamlet)
    out = tmp_path / "out"
    result = runner.invoke(build_app(), ["inspect", "--text", str(text), "--no-probes", "--out", str(out)])
    assert result.exit_code == 2
    assert "8192" in result.output and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())
    result = runner.invoke(build_app(), ["inspect", "--max-tokens", "9000", "--out", str(out)])
    assert result.exit_code == 2 and "8192" in result.output


def test_bad_arguments_are_clean_errors(tmp_path):
    both = runner.invoke(build_app(), ["inspect", "--text", "x.txt", "--prompt", "hi"])
    missing = runner.invoke(build_app(), ["inspect", "--text", str(tmp_path / "none.txt")])
    fmt = runner.invoke(build_app(), ["inspect", "--prompt", "hi", "--format", "xml"])
    for result, words in ((both, "not both"), (missing, "no such file"), (fmt, "valid: table, json")):
        assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output


def test_writer_leaves_no_partial_file_on_error(tmp_path):
    import pandas as pd

    df = pd.DataFrame([{f: 0.5 for f in HEAD_FIELDS} | {"kind": "local", "top_received": []}])
    df.attrs.update(tokens=["a"], n_tokens=1, sinks=[])
    doc = heads_document(df, "m")
    write_heads(df, tmp_path / "ok", doc)
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["heads.csv", "heads.json"]
    doc["params"] = {"bad": object()}  # not JSON-serialisable: fails before anything is renamed
    with pytest.raises(TypeError):
        write_heads(df, tmp_path / "bad", doc)
    assert list((tmp_path / "bad").iterdir()) == []


def test_default_passage_fits_an_encoder_with_special_tokens():
    """The default passage is ours to cut: [CLS]/[SEP] must not push it past --max-tokens."""
    from typer.testing import CliRunner

    from attnlab.cli import build_app

    import tempfile

    out = tempfile.mkdtemp()
    result = CliRunner().invoke(build_app(), ["inspect", "--model", "minilm-l6", "--max-tokens", "64",
                                              "--no-probes", "--out", out, "--format", "json"])
    assert result.exit_code == 0, result.output
    import json, pathlib

    assert json.loads((pathlib.Path(out) / "heads.json").read_text())["n_tokens"] == 64
