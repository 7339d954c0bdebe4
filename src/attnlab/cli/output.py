"""The one output path of the CLI: a rich table for people or JSON for programs."""

from __future__ import annotations

import json
import sys
from typing import Callable

FORMATS = ("table", "json")


def emit(data, fmt: str, table: Callable[[object], None]) -> None:
    """Print `data` as JSON (fmt='json') or through `table(data)` (fmt='table')."""
    if fmt == "json":
        json.dump(data, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif fmt == "table":
        table(data)
    else:
        fail(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")


def console():
    from rich.console import Console

    return Console()


def fail(message: str, code: int = 2):
    """Print an error for a person and exit with `code`."""
    import typer

    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def guarded(fn: Callable):
    """Run fn(), turning the errors a user can cause into one clean message and exit 2."""
    from ..core.session import UnsupportedModelError
    from ..text import InputError

    try:
        return fn()
    except (InputError, UnsupportedModelError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
