"""Evaluation: task formatting and splits, log-likelihood scoring (batched = one by one =
direct computation), bootstrap intervals, the paired comparison, the greedy search never
seeing the test split, and the CLI commands `eval` / `steer`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnlab.evals import bootstrap, search, tasks
from attnlab.evals.scoring import Scores, score

TASK = {
    "task_prefix": "Answer the question.",
    "example_output_prefix": "\nAnswer: ",
    "append_choices_to_input": False,
    "examples": [
        {"input": "What color is the sky on a clear day?", "target_scores": {"blue": 1, "green": 0, "red": 0}},
        {"input": "How many legs does a dog have?", "target_scores": {"three": 0, "four": 1}},
        {"input": "Which animal says moo?", "target_scores": {"cow": 1, "cat": 0, "duck": 0, "horse": 0}},
        {"input": "What is the opposite of hot?", "target_scores": {"cold": 1, "warm": 0}},
        {"input": "Free text only", "target": "no choices"},
    ] + [{"input": f"Is {i} an even number?", "target_scores": {"yes": int(i % 2 == 0), "no": int(i % 2)}}
         for i in range(20)],
}


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("task") / "tiny_task.json"
    path.write_text(json.dumps(TASK))
    return str(path)


def test_items_are_formatted_like_bigbench_and_splits_partition(task_file):
    items = tasks.load_task(task_file)
    assert len(items) == 24  # the free-text example has no target_scores
    first = items[0]
    assert first.prompt == "Answer the question.\nQ: What color is the sky on a clear day?\nAnswer:"
    assert first.choices == ("blue", "green", "red") and first.answer == 0
    assert items[1].answer == 1
    dev, test = tasks.load_task(task_file, "dev"), tasks.load_task(task_file, "test")
    assert dev and test and not {i.prompt for i in dev} & {i.prompt for i in test}
    assert len(dev) + len(test) == len(items)
    assert tasks.load_task(task_file, "dev", limit=3) == dev[:3]
    with pytest.raises(ValueError, match="unknown split"):
        tasks.load_task(task_file, "train")


def test_appended_choices():
    task = {"examples": [{"input": "Pick one.", "target_scores": {"a": 0, "b": 1}}]}
    item = tasks._item(task, task["examples"][0])
    assert item.prompt == "Q: Pick one.\n  choice: a\n  choice: b\nA:"


def test_bootstrap_intervals():
    rng = np.random.default_rng(1)
    x = rng.random(400) < 0.6
    ci = bootstrap.accuracy_ci(x)
    assert ci["lo"] < ci["acc"] < ci["hi"] and 0.04 < ci["hi"] - ci["lo"] < 0.12
    same = bootstrap.paired_delta_ci(x, x)
    assert same["delta"] == same["lo"] == same["hi"] == 0.0
    better = x | (rng.random(400) < 0.3)
    d = bootstrap.paired_delta_ci(better, x)
    assert d["lo"] > 0 and d["p_not_better"] == 0.0
    # pairing: the paired interval is narrower than the two accuracy intervals would suggest
    a, b = bootstrap.accuracy_ci(better), bootstrap.accuracy_ci(x)
    assert d["hi"] - d["lo"] < (a["hi"] - a["lo"]) + (b["hi"] - b["lo"])


def test_predictions_by_sum_and_mean():
    sc = Scores(logp=[[-2.0, -3.0], [-6.0, -4.0]], n=[[1, 3], [3, 1]])
    assert sc.predictions("sum") == [0, 1]
    assert sc.predictions("mean") == [1, 0]
    with pytest.raises(ValueError, match="normalisation"):
        sc.predictions("max")


@pytest.mark.real
def test_batched_scores_equal_direct_log_likelihood(smollm2, task_file):
    model, tok = smollm2
    items = tasks.load_task(task_file, limit=4)
    batched = score(model, tok, items, kernel="eager", batch_size=16)
    single = score(model, tok, items, kernel="sdpa", batch_size=1)
    np.testing.assert_allclose(np.concatenate(batched.logp), np.concatenate(single.logp), atol=2e-3)
    it = items[2]
    p = tok(it.prompt, add_special_tokens=False)["input_ids"]
    c = tok(" " + it.choices[1], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + c])).logits[0].float()
    direct = sum(float(torch.log_softmax(logits[len(p) - 1 + j], -1)[t]) for j, t in enumerate(c))
    assert abs(batched.logp[2][1] - direct) < 2e-3
    assert batched.n[2][1] == len(c)


@pytest.mark.real
def test_evaluate_pairs_runs_and_identity_modifier_changes_nothing(smollm2, task_file):
    from attnlab.evals.run import evaluate
    from attnlab.steer import emphasize, sink_scale

    model, tok = smollm2
    span = emphasize(0.0, span="Q:")  # identity, but exercises per-batch span positions
    res = evaluate(model, tok, task_file, [sink_scale(1.0), span], ["sink_scale:factor=1"], limit=6)
    assert span.positions.shape[0] == sum(len(it.choices) for it in tasks.load_task(task_file, limit=6))
    assert res["kernel"] == "eager" and res["n"] == 6
    assert res["delta"]["delta"] == 0.0 and res["changed"] == {"fixed": 0, "broken": 0}
    assert res["steered"]["acc"] == res["baseline"]["acc"]


def test_search_never_sees_the_test_split(task_file, monkeypatch):
    seen = []

    def fake_score(model, tok, items, modify=(), kernel="eager", batch_size=16, progress=None):
        seen.append((tuple(it.prompt for it in items), tuple(modify)))
        good = any(m == "good" for m in modify)
        right = [[0.0 if (c == it.answer) == good else -1.0 for c in range(len(it.choices))] for it in items]
        return Scores(right, [[1] * len(it.choices) for it in items])

    class FakeModel:
        config = type("C", (), {"num_hidden_layers": 10})()

    monkeypatch.setattr(search, "score", fake_score)
    specs = ["bad", "good"]
    monkeypatch.setattr(search, "candidates", lambda n, g, m: specs)
    res = search.search(FakeModel(), None, task_file, parse=lambda s: s, steps=2)
    assert res["chosen"] == ["good"]
    test_prompts = {it.prompt for it in tasks.load_task(task_file, "test")}
    *during, test_base, test_steered = seen
    assert all(not set(p) & test_prompts for p, _ in during)
    assert set(test_base[0]) == test_prompts and test_steered[1] == ("good",)
    assert res["test"]["n"] == len(test_prompts)


def test_candidates_cover_layer_blocks():
    c = search.candidates(12, group=5)
    assert "sink_scale:factor=0.5,layers=0-4" in c and "calibrate:factor=0.4,threshold=5,layers=10-11" in c
    assert sum("layers=all" in s for s in c) == 3


def _cli(args):
    from typer.testing import CliRunner

    from attnlab.cli import build_app

    return CliRunner().invoke(build_app(), args)


def test_cli_bad_modifier_is_a_clean_error(task_file):
    res = _cli(["eval", "--task", task_file, "--modify", "sink_scal:factor=0.5"])
    assert res.exit_code == 2 and "valid modifiers" in res.output and "Traceback" not in res.output
    res = _cli(["eval", "--task", task_file, "--modify", "sink_scale:facter=0.5"])
    assert res.exit_code == 2 and "its parameters" in res.output
    res = _cli(["steer", "--task", task_file])
    assert res.exit_code == 2 and "--search" in res.output


@pytest.mark.real
def test_cli_eval_json(smollm2, task_file, monkeypatch):
    import attnlab.models

    monkeypatch.setattr(attnlab.models, "load", lambda name=None: smollm2)
    res = _cli(["eval", "--task", task_file, "--limit", "4", "--modify", "sink_scale:factor=0.5,layers=0-5",
                "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["n"] == 4 and data["modifiers"] == ["sink_scale:factor=0.5,layers=0-5"]
    assert set(data) >= {"baseline", "steered", "delta", "chance"}
