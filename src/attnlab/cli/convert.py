"""`attnlab convert`: linearize a model's attention by attention transfer, save the feature maps."""

from __future__ import annotations

import typer


def _table(row: dict) -> None:
    from rich.table import Table

    from .output import console

    table = Table(title=f"attnlab convert -> {row['out']}")
    table.add_column("what")
    table.add_column("value")
    for key, value in row.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console().print(table)


def register(app: typer.Typer) -> None:
    from .output import emit, guarded

    @app.command("convert")
    def convert_cmd(
        out: str = typer.Option(..., "--out", help="directory for the feature maps (and the resumable checkpoint)"),
        model: str = typer.Option(None, "--model", help="model name or folder (default SmolLM2-135M)"),
        feature_map: str = typer.Option("hedgehog", "--feature-map", help="elu, relu, performer or hedgehog"),
        window: int = typer.Option(64, "--window", help="softmax window of the hybrid kernel; 0 = pure linear"),
        tokens: int = typer.Option(65536, "--tokens", help="training tokens"),
        seq_len: int = typer.Option(256, "--seq-len", help="tokens per training sequence"),
        eval_tokens: int = typer.Option(4096, "--eval-tokens", help="held-out tokens for the perplexities (0: none)"),
        lr: float = typer.Option(1e-2, "--lr", help="learning rate (AdamW, warmup + cosine)"),
        threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
    ):
        """Train feature maps so each layer's linear / hybrid attention matches its softmax
        attention (attention transfer); save them (safetensors + json) with the held-out
        perplexities. Use them with --kernels "hybrid:maps=DIR"."""
        from ..convert.run import check_options, convert

        def go():
            if fmt not in ("table", "json"):
                from ..errors import OptionError

                raise OptionError(f"--format must be table or json, got {fmt!r}")
            check_options(feature_map, window, tokens, seq_len, eval_tokens)
            if threads:
                import torch

                torch.set_num_threads(threads)
            return convert(model, feature_map, window, tokens, out, seq_len, eval_tokens, lr=lr,
                           progress=fmt == "table")

        emit(guarded(go), fmt, _table)
