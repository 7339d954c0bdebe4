"""`attnlab explain`: which passages of a context an answer came from, per method and by ablation."""

from __future__ import annotations

from typing import List, Optional

import typer


def _table(data) -> None:
    from rich.table import Table

    from .output import console, esc

    cols = list(data["methods"].items()) + ([("ablation", data["ablation"])] if "ablation" in data else [])
    table = Table(title=esc(f"answer {data['answer']!r}: passage rank per method (1 = most credited)"))
    table.add_column("passage", no_wrap=True)
    for name, _ in cols:
        table.add_column(name, no_wrap=True)
    flags = data.get("injection") or [{}] * len(data["passages"])
    for p, flag in zip(data["passages"], flags):
        text = " ".join(p["text"].split())
        label = esc(f"{p['index']}: {text[:24]}") + (" [red]injection?[/]" if flag.get("flagged") else "")
        table.add_row(label, *(str(e["ranking"].index(p["index"]) + 1) for _, e in cols))
    table.add_row("rho vs ablation", *(f"{e['spearman_vs_ablation']:.2f}" if e.get("spearman_vs_ablation")
                                            is not None else "-" for _, e in cols))
    table.add_row("seconds", *(f"{e['seconds']:.1f}" for _, e in cols))
    console().print(table)


def _progress_bar():
    """A rich progress display on stderr and the (what, done, total) callback that drives it."""
    from rich.console import Console
    from rich.progress import Progress

    from .output import esc

    bar = Progress(transient=True, console=Console(stderr=True))
    tasks = {}

    def update(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = bar.add_task(esc(what), total=total)
        bar.update(tasks[what], completed=done)

    return bar, update


def _check(context, question, answer, methods, model, agg, fmt) -> None:
    """Every option checked before any model loads (explain_file checks the case again)."""
    from ..errors import OptionError
    from ..explain.run import check_case, check_methods, check_model, read_context
    from .output import FORMATS

    if fmt not in FORMATS:
        raise OptionError(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
    check_methods(methods)
    check_case(read_context(context), question, answer, agg)
    check_model(model)  # also: an unknown or missing model fails here


def register(app: typer.Typer) -> None:
    from .output import emit, guarded

    @app.command("explain")
    def explain_cmd(
        context: str = typer.Option(..., "--context", help="passages: .json list, or text split by '---' or blank lines"),
        question: str = typer.Option(..., "--question", help="text placed after the passages; the answer follows it"),
        answer: Optional[str] = typer.Option(None, "--answer", help="answer to explain (default: the model's greedy one)"),
        method: Optional[List[str]] = typer.Option(None, "--method", help="method(s), repeatable or comma-separated"),
        model: Optional[str] = typer.Option(None, "--model", help="embedded name, folder or .gguf (default smollm2-135m)"),
        out: str = typer.Option("attnlab-explain", "--out", help="directory for explain.json"),
        no_ablation: bool = typer.Option(False, "--no-ablation", help="skip the leave-one-out ground truth"),
        agg: str = typer.Option("topk", "--agg", help="traceback passage aggregation: topk, sum or mean"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
    ):
        """Rank the passages of a context by how much the answer drew on them."""
        from ..explain.run import DEFAULT_METHODS, explain_file

        methods = [m.strip() for item in (method or DEFAULT_METHODS) for m in item.split(",") if m.strip()]
        guarded(lambda: _check(context, question, answer, methods, model, agg, fmt))

        def run():
            bar, update = _progress_bar()
            with bar:
                return explain_file(context, question, answer, methods, model, out, progress=update,
                                    ablation=not no_ablation, agg=agg)

        emit(guarded(run), fmt, _table)
