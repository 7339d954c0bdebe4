"""`attnlab eval` and `attnlab steer`: multiple-choice accuracy with and without head
interventions, paired on the same items, and a greedy search for interventions."""

from __future__ import annotations

from typing import List, Optional

import typer


def _ci(r: dict) -> str:
    return f"{r['acc']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"


def _delta(r: dict) -> str:
    return f"{r['delta']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"


def _comparison_rows(res: dict) -> list[tuple[str, str]]:
    rows = [("items", f"{res['n']} (chance {res['chance']:.3f}, choice score: {res['norm']} log-likelihood)"),
            ("baseline accuracy [95% CI]", _ci(res["baseline"]))]
    if "steered" in res:
        rows += [("steered accuracy [95% CI]", _ci(res["steered"])),
                 ("delta, paired [95% CI]", _delta(res["delta"])),
                 ("items fixed / broken", f"{res['changed']['fixed']} / {res['changed']['broken']}")]
    return rows


def _print_rows(title: str, rows) -> None:
    """A two-column table; title and cells print literally (task names and specs are user text)."""
    from rich.table import Table

    from .output import console, esc

    table = Table(title=esc(title), show_header=False)
    for k, v in rows:
        table.add_row(esc(k), esc(v))
    console().print(table)


def _eval_table(res: dict) -> None:
    mods = "; ".join(res["modifiers"]) or "none"
    _print_rows(f"{res['task']} ({res['split']}), kernel {res['kernel']}, modifiers: {mods}", _comparison_rows(res))


def _search_table(res: dict) -> None:
    rows = [("dev items / candidates", f"{res['n_dev']} / {res['n_candidates']}"),
            ("dev baseline -> searched", f"{res['dev_baseline']['acc']:.3f} -> {res['dev_acc']:.3f}"),
            ("chosen", "; ".join(res["chosen"]) or "nothing beat the baseline on dev")]
    rows += [(f"test: {k}", v) for k, v in _comparison_rows(res["test"])]
    _print_rows(f"{res['task']}: greedy search on dev, reported on held-out test", rows)


def _progress():
    """A transient progress bar on stderr (stdout stays clean for --format json)."""
    from rich.console import Console
    from rich.progress import Progress

    return Progress(transient=True, console=Console(stderr=True))


def _tick(bar, job, describe):
    """The progress callback(stage, done, total) of one bar task; describe(stage) -> its text."""
    from .output import esc

    return lambda stage, d, t: bar.update(job, description=esc(describe(stage)), completed=d, total=t)


def _check_eval(task, modify, split, norm, limit, kernel, model, fmt):
    """Every option of `attnlab eval` checked before the model loads; returns the task's items."""
    from ..evals.run import check_kernel, check_options
    from ..evals.tasks import load_task
    from ..steer.spec import check_modifier

    _check_format(fmt)
    check_options(split, norm, limit)
    check_kernel(kernel, [check_modifier(spec) for spec in modify])
    _check_scorable(model)
    return load_task(task, split=split, limit=limit)


def _check_scorable(model) -> None:
    """OptionError before loading when the model has no next-token logits (an encoder);
    causal LMs and encoder-decoders (the decoder scores the choice) are fine."""
    from ..errors import OptionError
    from ..models import model_kind

    if model_kind(model) == "encoder":  # also: an unknown or missing model fails here
        raise OptionError(f"scoring choices needs a language model (a causal LM or an encoder-decoder); "
                          f"{model} is an encoder (no next-token logits)")


def _check_format(fmt: str) -> None:
    from ..errors import OptionError
    from .output import FORMATS

    if fmt not in FORMATS:
        raise OptionError(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")


def _check_steer(task, search, steps, group, norm, limit, model, fmt) -> None:
    """Every option of `attnlab steer` checked before the model loads."""
    from ..errors import OptionError
    from ..evals.run import check_options
    from ..evals.tasks import load_task

    if not search:
        raise OptionError("nothing to do: pass --search (or try a setting with `attnlab eval --modify`)")
    if steps < 1 or group < 1:
        raise OptionError("--steps and --group must be >= 1")
    _check_format(fmt)
    check_options("all", norm, limit)
    _check_scorable(model)
    load_task(task, split="dev", limit=limit)


def _modifiers(specs, model, tok):
    from ..steer.spec import parse_modifier

    return [parse_modifier(s, model, tok) for s in specs]


def register(app: typer.Typer) -> None:
    from .output import emit, guarded

    @app.command("eval")
    def eval_cmd(
        task: str = typer.Option(..., "--task", help="BIG-bench task name (e.g. emoji_movie) or a task.json path"),
        modify: List[str] = typer.Option([], "--modify", help='modifier spec, repeatable: "sink_scale:factor=0.5,layers=0-5"'),
        limit: Optional[int] = typer.Option(None, "--limit", help="first N items (of the split)"),
        split: str = typer.Option("all", "--split", help="all, dev or test (fixed halves)"),
        norm: str = typer.Option("sum", "--norm", help="choice score: sum or mean (per token) log-likelihood"),
        kernel: Optional[str] = typer.Option(None, "--kernel",
                                             help="kernel name or spec, e.g. eager:block_size=256 "
                                                  "(default: eager if a modifier needs probabilities, else sdpa)"),
        model: Optional[str] = typer.Option(None, "--model", help="embedded name, folder or .gguf"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        adapter: Optional[str] = typer.Option(None, "--adapter", help="a saved `attnlab tune` adapter folder"),
    ):
        """Multiple-choice accuracy (95% bootstrap CI); with --modify, steered vs baseline, paired."""
        from ..evals.run import evaluate
        from ..models import load

        items = guarded(lambda: _check_eval(task, modify, split, norm, limit, kernel, model, fmt))
        if adapter is not None:  # a tuned adapter (attnlab.tune) is one more modifier
            from ..tune.adapter import read_config

            guarded(lambda: read_config(adapter))

        def run():
            m, tok = load(model)
            mods, specs = _modifiers(modify, m, tok), list(modify)
            if adapter is not None:
                from ..tune import load as load_adapter

                mods, specs = mods + [load_adapter(adapter, m)], specs + [f"adapter:{adapter}"]
            with _progress() as bar:
                tick = _tick(bar, bar.add_task("scoring", total=None), str)
                return evaluate(m, tok, task, mods, specs, split, limit, norm, kernel, progress=tick, items=items)

        emit(guarded(run), fmt, _eval_table)

    @app.command("steer")
    def steer_cmd(
        task: str = typer.Option(..., "--task", help="BIG-bench task name or task.json path"),
        search: bool = typer.Option(False, "--search", help="greedy search on the dev split, report on test"),
        steps: int = typer.Option(2, "--steps", help="greedy steps (modifiers added at most)"),
        limit: Optional[int] = typer.Option(None, "--limit", help="items per split"),
        group: int = typer.Option(5, "--group", help="layers per candidate block"),
        norm: str = typer.Option("sum", "--norm", help="choice score: sum or mean log-likelihood"),
        model: Optional[str] = typer.Option(None, "--model", help="embedded name, folder or .gguf"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
    ):
        """Search head interventions (sink_scale, calibrate per layer block) for a task."""
        from ..evals.search import search as run_search
        from ..models import load
        from ..steer.spec import parse_modifier

        guarded(lambda: _check_steer(task, search, steps, group, norm, limit, model, fmt))

        def run():
            m, tok = load(model)
            with _progress() as bar:
                tick = _tick(bar, bar.add_task("search", total=None), lambda s: f"step {s}")
                return run_search(m, tok, task, parse_modifier, steps, limit, norm, group=group, progress=tick)

        emit(guarded(run), fmt, _search_table)
