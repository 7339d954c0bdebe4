"""`attnlab tune`: train a head-level adapter (or a PEFT baseline) on a task, and
`attnlab tune merge`: fold a lofit / gates adapter into a plain Hugging Face model folder."""

from __future__ import annotations

from typing import Optional

import typer


def _check(task, method, heads, steps, seed, batch_size, out, fmt, select="lofit") -> None:
    """Every option checked before the model loads."""
    from ..errors import OptionError
    from ..tune.api import check_select, check_train
    from ..tune.data import task_splits
    from .steer import _check_format

    _check_format(fmt)
    if task is None or out is None:
        raise OptionError("attnlab tune needs --task and --out (or the subcommand: attnlab tune merge DIR --out MODEL_DIR)")
    check_train(method, heads, steps, batch_size)
    check_select(select)
    if seed < 0:
        raise OptionError(f"--seed must be >= 0, got {seed}")
    task_splits(task)


def _table(res: dict) -> None:
    from .steer import _ci, _delta, _print_rows

    t = res["test"]
    rows = [("method / heads", f"{res['method']} / {len(res['heads'])} heads" if res["heads"] else res["method"]),
            ("trainable parameters", f"{res['trainable_params']:,}"),
            ("train items / dev / test", " / ".join(str(res["splits"]["sizes"][k]) for k in ("train", "dev", "test"))),
            ("dev accuracy (best)", f"{res['dev_acc']:.3f}"),
            ("test: base accuracy [95% CI]", _ci(t["baseline"])),
            ("test: tuned accuracy [95% CI]", _ci(t["steered"])),
            ("test: delta, paired [95% CI]", _delta(t["delta"])),
            ("training", f"{res['history']['train_seconds']:.0f} s, {res['history']['tokens_per_s']:.0f} tokens/s"),
            ("saved", res["out"])]
    if res.get("open_heads") is not None:
        rows.insert(1, ("open heads (gates)", str(len(res["open_heads"]))))
    _print_rows(f"tune {res['task']}", rows)


def register(app: typer.Typer) -> None:
    from .output import emit, guarded

    tune_app = typer.Typer(help="Head-level fine-tuning (lofit, gates, head_lora) and PEFT baselines (lora, ia3).",
                           invoke_without_command=True, no_args_is_help=False)

    @tune_app.callback()
    def tune_cmd(
        ctx: typer.Context,
        task: Optional[str] = typer.Option(None, "--task", help="BIG-bench task name or task.json path"),
        method: str = typer.Option("lofit", "--method", help="lofit, gates, head_lora, lora or ia3"),
        heads: str = typer.Option("3%", "--heads", help="head budget (3%, 12) or layer:head;... (lofit, head_lora)"),
        steps: int = typer.Option(150, "--steps", help="optimizer steps in total"),
        seed: int = typer.Option(0, "--seed"),
        batch_size: int = typer.Option(8, "--batch-size"),
        lr: Optional[float] = typer.Option(None, "--lr", help="learning rate (default per method)"),
        targets: Optional[str] = typer.Option(None, "--targets", help="lora: q,v or q,k,v,o; head_lora: q,k,v,o"),
        train_items: Optional[int] = typer.Option(None, "--train-items", help="first N training items"),
        test_items: Optional[int] = typer.Option(300, "--test-items", help="first N test items"),
        kernel: str = typer.Option("sdpa", "--kernel"),
        select: str = typer.Option("lofit", "--select",
                                   help="how a head budget is filled (lofit, head_lora): lofit (step 1), random, "
                                        "or kind:COLUMN from the head taxonomy, e.g. kind:retrieval"),
        model: Optional[str] = typer.Option(None, "--model", help="embedded name, folder or .gguf"),
        out: Optional[str] = typer.Option(None, "--out", help="adapter folder to write"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
    ):
        """Train an adapter on the task's train split, early-stop on dev, report paired test accuracy."""
        if ctx.invoked_subcommand is not None:
            return
        guarded(lambda: _check(task, method, heads, steps, seed, batch_size, out, fmt, select))

        def run():
            from ..models import load
            from ..tune import train

            m, tok = load(model)
            opts = {"targets": targets} if targets else {}
            adapter = train(m, tok, task=task, method=method, heads=heads, steps=steps, seed=seed, lr=lr,
                            batch_size=batch_size, kernel=kernel, train_items=train_items, test_items=test_items,
                            checkpoint_dir=out, select=select, **opts)
            adapter.save(out)
            return {"task": task, "method": method, "heads": adapter.heads, "out": out,
                    "trainable_params": adapter.num_trainable(), **adapter.meta}

        emit(guarded(run), fmt, _table)

    @tune_app.command("merge")
    def merge_cmd(
        folder: str = typer.Argument(..., help="saved adapter folder (lofit or gates)"),
        out: str = typer.Option(..., "--out", help="model folder to write"),
        model: Optional[str] = typer.Option(None, "--model", help="the adapter's base model (default: the default model)"),
    ):
        """Fold a lofit / gates adapter into o_proj and write a plain Hugging Face model folder."""
        from ..tune.adapter import read_config

        doc = guarded(lambda: read_config(folder))

        def run():
            from ..models import load
            from ..tune import load as load_adapter
            from ..tune.merge import MERGEABLE, merge
            from ..errors import OptionError

            if doc["method"] not in MERGEABLE:
                raise OptionError(f"merge folds {' / '.join(MERGEABLE)} adapters; {folder} is {doc['method']!r}")
            m, tok = load(model)
            return str(merge(load_adapter(folder, m), m, out, tok))

        from .output import console, esc

        console().print(f"merged model written to {esc(guarded(run))}")

    app.add_typer(tune_app, name="tune")
