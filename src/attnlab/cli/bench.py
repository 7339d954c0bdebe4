"""`attnlab bench`: quality x speed x memory of attention kernels on real long text."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def print_report(report: dict) -> None:
    """The rich table of one benchmark run (plus the needle and summary lines)."""
    from rich.table import Table

    from .output import console, esc

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    table = Table(title=esc(f"attnlab bench: {report['config']['model']} on {report['config']['corpus']}"))
    cols = ("kernel", "len", "prefill s", "speed-up", "attn %", "attn x", "ppl", "ppl Δ%", "KL", "needles %",
            "decode tok/s", "peak MB", "prefill MB", "density")
    for col in cols:
        table.add_column(col, justify="left" if col == "kernel" else "right")
    for r in report["rows"]:
        table.add_row(esc(r["kernel"]), str(r["length"]), fmt(r["prefill_s"], ".2f"), fmt(r["speedup"], ".2f"),
                      fmt(100 * r["attention_share"], ".0f"), fmt(r["attention_speedup"], ".2f"),
                      fmt(r["ppl"], ".3f"), fmt(r["ppl_change_pct"], "+.2f"),
                      fmt(r["kl"], ".4f"), fmt(r["needle_acc"], ".0f"), fmt(r["decode_tok_s"], ".1f"),
                      fmt(r["peak_rss_mb"], ".0f"), fmt(r["prefill_rss_mb"], ".0f"), fmt(r["density"], ".3f"))
    out = console()
    if not out.is_terminal:
        out.width = max(out.width, 170)
    out.print(table)
    for label, n in report["needles"].items():
        delta = "" if n["delta_pts"] is None else f" ({n['delta_pts']:+.0f} pts vs sdpa)"
        out.print(f"needles {label}: {n['accuracy']:.0f}% of {n['n']}{delta}", markup=False)
    for error in report.get("errors", []):
        out.print(f"[red]failed:[/] {esc(error)}", highlight=False)
    if report.get("kv_rows"):
        kv = Table(title="compressed decoding (attach(kv=...), model.generate after an sdpa prefill)")
        for col in ("kv", "len", "cache MB", "x none", "other MB", "prefill s", "x none ", "decode tok/s",
                    "x none  ", "decode peak MB", "saved MB", "agree %", "needles %"):
            kv.add_column(col, justify="left" if col == "kv" else "right")
        for r in report["kv_rows"]:
            kv.add_row(esc(r["kv"]), str(r["length"]), fmt(r["cache_mb"], ".1f"), fmt(r["cache_ratio"], ".2f"),
                       fmt(r["other_layers_mb"], ".1f"), fmt(r["prefill_s"], ".2f"), fmt(r["prefill_overhead"], ".2f"),
                       fmt(r["decode_tok_s"], ".2f"), fmt(r["decode_speedup"], ".2f"),
                       fmt(r["peak_rss_decode_mb"], ".0f"), fmt(r["rss_saved_mb"], "+.0f"),
                       fmt(100 * r["agreement"], ".0f"), fmt(r["needle_acc"], ".0f"))
        out.print(kv)
    for length, best in report["summary"]["best"].items():
        pick = best["best_quality_kept"]
        text = f"{pick['kernel']} x{pick['speedup']:.2f}" if pick else "none keeps quality"
        out.print(f"best sparse kernel at {length} with ppl <= +2% and needles >= -5 pts: {text}", markup=False)


def _progress_bar():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), transient=True, console=Console(stderr=True))


def register(app: typer.Typer) -> None:
    from .output import emit, guarded

    @app.command("bench")
    def bench_cmd(
        model: str = typer.Option("smollm2-135m", "--model", help="embedded model name or path"),
        kernels: str = typer.Option("chunked", "--kernels",
                                    help="kernel specs, e.g. chunked,streaming:sinks=4,window=1020 "
                                         "(sdpa, the dense baseline, is always run); @repeats=N, @needles=0, @min_length=N, @max_length=N per kernel"),
        lengths: str = typer.Option("2048,4096", "--lengths", help="prefill lengths in tokens"),
        corpus: str = typer.Option("austen:prideprejudice", "--corpus",
                                   help="shakespeare[:play], austen[:novel], kjv[:range], or a text file"),
        needles: int = typer.Option(20, "--needles", help="needle cases per kernel (0: skip)"),
        needle_lengths: str = typer.Option("1024,2048", "--needle-lengths", help="needle prompt lengths"),
        repeats: int = typer.Option(3, "--repeats", help="timed prefills per cell (median reported)"),
        decode_steps: int = typer.Option(8, "--decode-steps", help="tokens decoded after the prefill"),
        ppl_last: int = typer.Option(0, "--ppl-last", help="score only the last N tokens (0: all)"),
        isolate: bool = typer.Option(True, "--isolate/--no-isolate",
                                     help="each (kernel, length) in a fresh process so peak RSS is its own"),
        keep_going: bool = typer.Option(False, "--keep-going",
                                        help="report a failing (non-dense) kernel and go on with the rest"),
        threads: int = typer.Option(0, "--threads", help="torch threads per worker process (0: torch default)"),
        out: Path = typer.Option(Path("bench-out"), "--out", help="folder for bench.csv/json, pareto.png"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        kv: Optional[str] = typer.Option(None, "--kv",
                                         help="KV-cache specs for compressed decoding, e.g. "
                                              "\"none,streaming:ratio=0.5,snapkv:ratio=0.5\" (none is the baseline)"),
        kv_new_tokens: int = typer.Option(16, "--kv-new-tokens", help="tokens generated per --kv spec"),
    ):
        """Perplexity, KL and needles vs dense; prefill time, decode speed, peak RSS, density.

        With --kv: compressed decoding per spec (cache bytes, prefill + compression time,
        decode tokens/s, decode peak RSS, agreement with the uncompressed tokens, needles).
        """
        from ..bench.run import BenchError, run_bench
        from ..bench.spec import BenchConfig, parse_ints, parse_kernels, split_kv
        from .output import FORMATS, esc, fail

        def build():
            from ..bench.run import check_causal

            check_causal(model)  # also: an unknown or missing model fails here
            config = BenchConfig(out=out, model=model, kernels=parse_kernels(kernels),
                                 lengths=parse_ints(lengths, "--lengths"), corpus=corpus, needles=needles,
                                 needle_lengths=parse_ints(needle_lengths, "--needle-lengths"), repeats=repeats,
                                 decode_steps=decode_steps, ppl_last=ppl_last or None,
                                 threads=threads, isolate=isolate, keep_going=keep_going,
                                 kv=split_kv(kv), kv_new_tokens=kv_new_tokens)
            config.validate()
            return config

        if fmt not in FORMATS:
            fail(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
        config = guarded(build)
        with _progress_bar() as bar:
            task = bar.add_task("bench", total=None)

            def progress(done, total, text):
                bar.update(task, completed=done, total=total, description=esc(text))

            try:
                report = guarded(lambda: run_bench(config, progress))
            except BenchError as exc:
                fail(str(exc))
        emit(report, fmt, print_report)
