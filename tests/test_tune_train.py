"""attnlab.tune training: splits, loss, the loop (learning, exact resume), train() end to end, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from helpers import save_tiny_llama

WORDS = ["red", "blue", "green", "cat", "dog", "cow", "tree", "rock", "pink", "gold", "bird", "fish"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny Llama folder with the real SmolLM2 tokenizer and a 120-item two-choice task file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("tune")
    folder = save_tiny_llama(root / "model")
    examples = [{"input": f"Item {i}: is {w} a colour?", "target_scores": {"yes": int(w in WORDS[:3] + WORDS[8:10]),
                                                                             "no": int(w not in WORDS[:3] + WORDS[8:10])}}
                for i in range(10) for w in WORDS]
    task = root / "colours.json"
    task.write_text(json.dumps({"examples": examples, "append_choices_to_input": False}))
    model = AutoModelForCausalLM.from_pretrained(folder)
    return model, AutoTokenizer.from_pretrained(folder), str(task), str(folder)


def test_splits_disjoint_stable_and_hashed(setup):
    from attnlab.tune.data import task_splits

    _, _, task, _ = setup
    s = task_splits(task)
    prompts = [set(it.prompt for it in getattr(s, k)) for k in ("train", "dev", "test")]
    assert not (prompts[0] & prompts[1]) and not (prompts[0] & prompts[2]) and not (prompts[1] & prompts[2])
    assert sum(map(len, prompts)) == 120 and min(map(len, prompts)) >= 8
    assert task_splits(task).hashes() == s.hashes() and len(set(s.hashes().values())) == 3
    assert len(task_splits(task, train_limit=5).train) == 5


def test_answer_nll_matches_the_evaluator(setup):
    """The training loss is exactly minus the evaluator's log-likelihood of the right choice."""
    from attnlab.evals.scoring import score
    from attnlab.tune.data import answer_nll, collate, encode_answers, task_splits

    model, tok, task, _ = setup
    items = task_splits(task).dev[:6]
    with torch.no_grad():
        loss = answer_nll(model, collate(encode_answers(tok, items), tok.eos_token_id))
    s = score(model, tok, items, (), "sdpa")
    want = -sum(lp[it.answer] for lp, it in zip(s.logp, items)) / len(items)
    assert abs(float(loss) - want) < 1e-4


def _fit(setup, steps=6, checkpoint=None, penalty=None):
    from attnlab.tune.data import encode_answers, task_splits
    from attnlab.tune.loop import LoopConfig, fit
    from attnlab.tune.methods import build
    from attnlab.tune.sites import head_sites

    model, tok, task, _ = setup
    s = task_splits(task)
    adapter = build("lofit", model, head_sites(model), [("decoder", 0, 1), ("decoder", 2, 2)], keep_scale=True)
    cfg = LoopConfig(steps=steps, lr=5e-2, batch_size=8, eval_every=3, patience=0, seed=1)
    hist = fit(model, tok, adapter, encode_answers(tok, s.train), s.dev[:8], cfg, penalty, checkpoint, show=False)
    return adapter, hist


def test_loop_learns_and_freezes_the_model(setup):
    from attnlab import attach
    from attnlab.tune.data import answer_nll, collate, encode_answers, task_splits

    model, tok, task, _ = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapter, hist = _fit(setup, steps=12)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.requires_grad for p in model.parameters())  # flags restored
    batch = collate(encode_answers(tok, task_splits(task).train), tok.eos_token_id)
    with torch.no_grad():
        base = float(answer_nll(model, batch))
        with attach(model, modify=[adapter]):
            tuned = float(answer_nll(model, batch))
    assert tuned < base - 0.05, (base, tuned)
    assert hist["steps_run"] == 12 and hist["tokens_per_s"] > 0 and len(hist["dev_curve"]) == 4


def test_interrupted_run_resumes_exactly(setup, tmp_path):
    calls = {"n": 0}

    def crash_at_step_5():
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return torch.zeros(())

    whole, _ = _fit(setup, penalty=lambda: torch.zeros(()))
    with pytest.raises(KeyboardInterrupt):
        _fit(setup, checkpoint=tmp_path / "ck.pt", penalty=crash_at_step_5)
    assert torch.load(tmp_path / "ck.pt", weights_only=False)["state"]["step"] == 3
    resumed, hist = _fit(setup, checkpoint=tmp_path / "ck.pt", penalty=lambda: torch.zeros(()))
    assert hist["steps_run"] == 6
    for k, v in whole.trainable_state().items():
        assert torch.allclose(v, resumed.trainable_state()[k], atol=1e-6), k


def test_train_end_to_end_and_cli(setup, tmp_path):
    from attnlab.cli import build_app
    from attnlab.tune import load, train

    model, tok, task, folder = setup
    adapter = train(model, tok, task=task, method="lofit", heads="2", steps=4, dev_items=8, show=False)
    m = adapter.meta
    assert len(adapter.heads) == 2 and m["trainable_params"] == 2 * 16
    assert set(m["splits"]["hashes"]) == {"train", "dev", "test"} and m["base_hash"]
    assert {"baseline", "steered", "delta"} <= set(m["test"]) and m["selection"]["select"] == "lofit"
    adapter.save(tmp_path / "a")
    assert load(tmp_path / "a", model).heads == adapter.heads
    runner = CliRunner()
    res = runner.invoke(build_app(), ["eval", "--task", task, "--adapter", str(tmp_path / "a"), "--model", folder,
                                      "--split", "test", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["modifiers"] == [f"adapter:{tmp_path / 'a'}"]
    res = runner.invoke(build_app(), ["tune", "merge", str(tmp_path / "a"), "--out", str(tmp_path / "m"),
                                      "--model", folder])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "config.json").exists()


def test_cli_tune_trains_and_checks_options(setup, tmp_path):
    from attnlab.cli import build_app

    _, _, task, folder = setup
    runner = CliRunner()
    bad = runner.invoke(build_app(), ["tune", "--task", task, "--method", "nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown method 'nope'" in bad.output and "Traceback" not in bad.output
    res = runner.invoke(build_app(), ["tune", "--task", task, "--method", "ia3", "--steps", "2", "--model", folder,
                                      "--out", str(tmp_path / "ia3"), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["method"] == "ia3" and out["trainable_params"] > 0
    assert json.loads((tmp_path / "ia3" / "adapter.json").read_text())["method"] == "ia3"


def test_train_resumes_after_lofit_step_one(setup, tmp_path, monkeypatch):
    """A run killed in lofit's step 2 resumes with step 1's heads and scalings from its own
    checkpoint (no step-1 step is re-run) and ends with the uninterrupted run's adapter."""
    import attnlab.tune.loop as loop
    from attnlab.tune import train

    model, tok, task, _ = setup
    kw = dict(task=task, method="lofit", heads="2", steps=8, dev_items=8, test_items=8, show=False, seed=2)
    whole = train(model, tok, **kw)
    real, calls = loop._step, {"n": 0}

    def counting(*a, crash_at=None, **k):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop, "_step", lambda *a, **k: counting(*a, crash_at=6, **k))
    with pytest.raises(KeyboardInterrupt):
        train(model, tok, checkpoint_dir=tmp_path, **kw)
    assert (tmp_path / "checkpoint_select.pt").exists()  # step 1 (4 steps) finished and was saved
    calls["n"] = 0
    monkeypatch.setattr(loop, "_step", lambda *a, **k: counting(*a, **k))
    resumed = train(model, tok, checkpoint_dir=tmp_path, **kw)
    assert calls["n"] == 4  # only step 2 ran again
    assert resumed.heads == whole.heads
    assert resumed.meta["selection"]["scores"] == whole.meta["selection"]["scores"]
    for k, v in whole.trainable_state().items():
        assert torch.allclose(v, resumed.trainable_state()[k], atol=1e-6), k


def test_heads_chosen_by_the_taxonomy_are_the_top_k_of_head_kinds(setup):
    """select='kind:COLUMN' fills the budget with the heads highest in that head_kinds column."""
    from attnlab.observe.kinds import head_kinds
    from attnlab.tune import train
    from attnlab.tune.api import check_select
    from attnlab.errors import OptionError

    model, tok, task, _ = setup
    adapter = train(model, tok, task=task, method="head_lora", heads="3", steps=2, dev_items=4, test_items=4,
                    show=False, select="kind:sink_mass")
    kinds = head_kinds(model, tok, probes=False)
    want = kinds.sort_values(["sink_mass", "layer", "head"], ascending=[False, True, True]).head(3)
    assert sorted(adapter.heads) == sorted((r.stack, int(r.layer), int(r.head)) for r in want.itertuples())
    sel = adapter.meta["selection"]
    assert sel["select"] == "kind:sink_mass" and len(sel["scores"]) == len(kinds)
    with pytest.raises(OptionError, match="no such numeric head statistic"):
        train(model, tok, task=task, method="head_lora", heads="3", steps=2, dev_items=4, test_items=4,
              show=False, select="kind:nothing")
    with pytest.raises(OptionError, match="unknown head selection"):
        check_select("taxonomy")
