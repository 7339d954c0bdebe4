"""`attnlab inspect`: the attention layout of a model, as attnlab sees it."""

from __future__ import annotations

from typing import Optional

import typer


def _layout_table(data) -> None:
    from rich.table import Table

    from .output import console

    table = Table(title=f"{data['model']}: {len(data['layers'])} attention layers, "
                        f"context {data['context']}, kernel {data['kernel']}")
    for col in ("layer", "module", "heads", "kv heads", "head dim", "causal", "window", "softcap"):
        table.add_column(col)
    for r in data["layers"]:
        table.add_row(str(r["layer"]), r["module"], str(r["heads"]), str(r["kv_heads"]), str(r["head_dim"]),
                      "yes" if r["causal"] else "no", str(r["sliding_window"] or "-"), str(r["softcap"] or "-"))
    console().print(table)


def register(app: typer.Typer) -> None:
    from .output import emit, guarded

    @app.command("inspect")
    def inspect_cmd(
        model: Optional[str] = typer.Option(None, "--model", help="embedded name, folder or .gguf (default smollm2-135m)"),
        kernel: str = typer.Option("sdpa", "--kernel", help="kernel that serves the forward"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
    ):
        """Show a model's attention layout as it passes through attnlab."""
        from ..layout import layout
        from ..models import load

        def run():
            m, tok = load(model)
            return layout(m, tok, kernel=kernel)

        emit(guarded(run), fmt, _layout_table)
