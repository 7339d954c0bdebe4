"""`attnlab models` and `attnlab kernels`: what can be loaded and which kernels exist."""

from __future__ import annotations

import typer


def models_data() -> list[dict]:
    from ..models import DEFAULT_MODEL, EMBEDDED

    return [
        {
            "name": m.name,
            "default": m.name == DEFAULT_MODEL,
            "title": m.title,
            "params_m": m.params_m,
            "layers": m.layers,
            "heads": m.heads,
            "kv_heads": m.kv_heads,
            "context": m.context,
            "causal": m.causal,
            "installed": m.installed,
            "install": m.install_command,
        }
        for m in EMBEDDED.values()
    ]


def kernels_data() -> list[dict]:
    from ..kernels import KERNELS

    return [
        {"name": n, "exposes_probs": k.exposes_probs, "params": k.params(), "summary": k.summary}
        for n, k in KERNELS.items()
    ]


def _models_table(rows) -> None:
    from rich.table import Table

    from .output import console

    table = Table(title="Embedded models")
    for col in ("name", "model", "params", "layers", "heads", "kv heads", "context", "installed"):
        table.add_column(col)
    for r in rows:
        name = r["name"] + (" (default)" if r["default"] else "")
        installed = "yes" if r["installed"] else f"no: {r['install']}"
        table.add_row(name, r["title"], f"{r['params_m']:.0f}M", str(r["layers"]), str(r["heads"]),
                      str(r["kv_heads"]), str(r["context"]), installed)
    console().print(table)


def _kernels_table(rows) -> None:
    from rich.table import Table

    from .output import console

    table = Table(title="Kernels (select with --kernel NAME:param=value,...)")
    for col in ("name", "probabilities", "parameters", "what"):
        table.add_column(col)
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        table.add_row(r["name"], "yes" if r["exposes_probs"] else "no", params, r["summary"])
    console().print(table)


def register(app: typer.Typer) -> None:
    from .output import emit

    @app.command("models")
    def models_cmd(fmt: str = typer.Option("table", "--format", help="table or json")):
        """List the embedded models: size, layers, heads, context, installed or how to install."""
        emit(models_data(), fmt, _models_table)

    @app.command("kernels")
    def kernels_cmd(fmt: str = typer.Option("table", "--format", help="table or json")):
        """List the attention kernels and their parameters."""
        emit(kernels_data(), fmt, _kernels_table)
