"""`attnlab generate`: greedy text generation under a KV-cache policy; prints the text, bytes, tokens/s."""

from __future__ import annotations

from pathlib import Path

import typer


def print_result(r: dict) -> None:
    from .output import console

    out = console()
    out.print(r["text"], markup=False, highlight=False)
    share = r["kv_bytes"] / r["kv_bytes_full"] if r["kv_bytes_full"] else float("nan")
    tps = "-" if r["decode_tokens_per_s"] is None else f"{r['decode_tokens_per_s']:.1f}"
    out.print(f"kv {r['kv']}: cache {r['kv_bytes'] / 2**20:.2f} MB held ({100 * share:.1f}% of "
              f"{r['kv_bytes_full'] / 2**20:.2f} MB uncompressed); prompt {r['prompt_tokens']} tokens, "
              f"{r['new_tokens']} new; prefill {r['prefill_s']:.2f} s; decode {tps} tokens/s", markup=False,
              highlight=False)
    for layer, why in r["skipped"].items():
        out.print(f"layer {layer} left alone: {why}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate_cmd(
        prompt_file: Path = typer.Option(..., "--prompt-file", help="text file holding the prompt"),
        model: str = typer.Option("smollm2-135m", "--model", help="embedded model name or path"),
        kv: str = typer.Option("none", "--kv", help="KV policy, e.g. snapkv:ratio=0.5 (see docs/kv.md)"),
        max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="tokens to generate"),
        keep_last: int = typer.Option(0, "--keep-last", help="protect the last N prompt tokens (0: the policy's)"),
        decode_budget: int = typer.Option(0, "--decode-budget", help="evict while decoding to N tokens per head"),
        kernel: str = typer.Option("sdpa", "--kernel", help="prefill kernel spec name (sdpa, chunked, block_topk...)"),
        threads: int = typer.Option(0, "--threads", help="torch threads (0: torch default)"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
    ):
        """Generate from a prompt file with a compressed or selected KV cache."""
        from ..kv.policy import parse
        from ..kv.run import generate
        from .output import FORMATS, emit, fail, guarded

        if fmt not in FORMATS:
            fail(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
        if not prompt_file.is_file():
            fail(f"--prompt-file {prompt_file} is not a file")
        if max_new_tokens < 1:
            fail(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
        spec = kv if not decode_budget else f"{kv}{',' if ':' in kv else ':'}decode_budget={decode_budget}"
        guarded(lambda: parse(spec))
        prompt = prompt_file.read_text()
        result = guarded(lambda: generate(prompt, model, spec, max_new_tokens, kernel, keep_last, threads))
        emit(result, fmt, print_result)
