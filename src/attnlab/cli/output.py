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


def esc(text) -> str:
    """`text` as rich markup that prints literally: user text ('[/x]', '[bold]') is never markup."""
    from rich.markup import escape

    return escape(str(text))


def note(message: str) -> None:
    """Print a note for a person on stderr (stdout stays clean for --format json); literal text."""
    from rich.console import Console

    Console(stderr=True).print(f"note: {message}", markup=False, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2):
    """Print an error for a person (literally: no markup in `message`) and exit with `code`."""
    import typer

    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {esc(message)}", highlight=False, soft_wrap=True)  # one line
    raise typer.Exit(code)


def guarded(fn: Callable):
    """Run fn(), turning the errors a user can cause into one clean message and exit 2.

    Those are attnlab's own (AttnlabError: bad input, spec or option), a model attnlab
    cannot attach to, and missing files or packages; anything else is a bug and keeps
    its traceback.
    """
    from ..core.session import UnsupportedModelError
    from ..errors import AttnlabError

    try:
        return fn()
    except (AttnlabError, UnsupportedModelError, FileNotFoundError) as exc:
        fail(str(exc))
