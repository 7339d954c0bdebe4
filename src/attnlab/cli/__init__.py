"""The `attnlab` command line: a thin typer app, one module per command group."""

from __future__ import annotations


def build_app():
    import typer

    from . import bench, convert, explain, generate, inspect, models, steer, tune

    app = typer.Typer(
        help="See, steer, speed up and tune the attention of Hugging Face transformers, head by head.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for module in (models, inspect, bench, explain, steer, convert, generate, tune):
        module.register(app)
    return app


def main() -> None:
    build_app()()
