"""Run a benchmark: every (kernel, length) cell and every kernel's needle test in a fresh
subprocess, the dense baseline first, then write bench.csv, bench.json and pareto.png.

`run_bench(config, progress)` is the library entry point; `progress(done, total, text)`
is called before each task (the CLI draws a rich progress bar from it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from .spec import DENSE, BenchConfig, KernelSpec


class BenchError(RuntimeError):
    """A benchmark task failed (the message says which and why)."""


def prepare_tokens(config: BenchConfig, tokenizer, work: Path) -> Path:
    """Tokenize the corpus once; ids [1, max(lengths)] saved for the workers."""
    import torch

    from ..errors import InputError
    from .corpora import load_corpus

    text = load_corpus(config.corpus)
    need = max(config.lengths)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < need:
        raise InputError(f"corpus {config.corpus!r} has {len(ids)} tokens, fewer than the longest "
                         f"length {need}; pick a longer corpus (e.g. austen, kjv)")
    path = work / "ids.pt"
    torch.save(torch.tensor([ids[:need]]), path)  # [1, N]
    return path


def needle_cases(config: BenchConfig, tokenizer) -> list[dict]:
    """`config.needles` cases spread over needle lengths x evenly spaced depths."""
    from ..errors import InputError
    from .corpora import load_corpus
    from .needles import make_case

    if not config.needles:
        return []
    haystack = load_corpus(config.corpus)
    per = [config.needles // len(config.needle_lengths)] * len(config.needle_lengths)
    for i in range(config.needles - sum(per)):
        per[i] += 1
    cases = []
    for length, count in zip(config.needle_lengths, per):
        for j in range(count):
            depth = round(0.05 + 0.9 * j / max(1, count - 1), 3)
            case = make_case(tokenizer, haystack, length, depth, seed=1000 * length + j)
            cases.append({"length": length, "case": asdict(case)})
    return cases


def _run_task(task: dict, work: Path, timeout: float, isolate: bool = True) -> dict:
    """Run one task in a fresh Python process (or here, if not isolate); its result dict."""
    if not isolate:
        from .worker import run_task

        return _checked(task, run_task(task))
    tag = "".join(c if c.isalnum() or c in "-_.=" else "_"
                  for c in f"{task['kind']}-{task['label']}-{task.get('length', 'n')}")
    task_path, result_path = work / f"{tag}.task.json", work / f"{tag}.result.json"
    task_path.write_text(json.dumps(task))
    try:
        proc = subprocess.run([sys.executable, "-m", "attnlab.bench.worker", str(task_path), str(result_path)],
                              capture_output=True, text=True, timeout=timeout, env=_worker_env())
    except subprocess.TimeoutExpired:
        raise BenchError(f"{task['label']} ({task['kind']}) timed out after {timeout:.0f} s") from None
    if not result_path.exists():
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise BenchError(f"{task['label']} ({task['kind']}) crashed (exit {proc.returncode}): {tail}")
    return _checked(task, json.loads(result_path.read_text()))


def _checked(task: dict, result: dict) -> dict:
    """The result, or BenchError naming the task if it failed."""
    if "error" in result:
        where = f" at {task['length']} tokens" if "length" in task else ""
        raise BenchError(f"{task['label']}{where}: {result['error']}")
    return result


def _worker_env() -> dict:
    """The parent's environment; OpenMP threads sleep instead of spinning when they wait
    (spinning threads collapse throughput on a shared, oversubscribed CPU)."""
    import os

    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _cell_task(config: BenchConfig, spec: KernelSpec, length: int, ids: Path, work: Path) -> dict:
    first = 0 if config.ppl_last is None else max(0, length - 1 - config.ppl_last)
    return {
        "kind": "cell", "model": config.model, "threads": config.threads, "label": spec.label,
        "kernel": spec.name, "params": spec.params, "length": length, "ids": str(ids), "dense": DENSE,
        "repeats": spec.repeats or config.repeats, "decode_steps": config.decode_steps,
        "kl_positions": config.kl_positions, "ppl_first": first,
        "parity_tokens": config.parity_tokens, "parity_params": spec.parity_params(),
        "ref": str(work / f"ref-{length}.pt"), "write_ref": spec.label == DENSE,
    }


def _needle_task(config: BenchConfig, spec: KernelSpec, cases: list[dict]) -> dict:
    return {"kind": "needles", "model": config.model, "threads": config.threads, "label": spec.label,
            "kernel": spec.name, "params": spec.params, "max_new_tokens": config.max_new_tokens,
            "cases": [{**c["case"], "length": c["length"]} for c in cases]}


def _kv_task(config: BenchConfig, spec: str, length: int, ids: Path) -> dict:
    return {"kind": "kv", "model": config.model, "threads": config.threads, "label": f"kv {spec}", "kv": spec,
            "length": length, "ids": str(ids), "new_tokens": config.kv_new_tokens}


def _kv_needle_task(config: BenchConfig, spec: str, cases: list[dict]) -> dict:
    return {"kind": "kv_needles", "model": config.model, "threads": config.threads, "label": f"kv {spec}",
            "kv": spec, "max_new_tokens": config.max_new_tokens,
            "cases": [{**c["case"], "length": c["length"]} for c in cases]}


def plan(config: BenchConfig, ids: Path, cases: list[dict], work: Path) -> list[dict]:
    """All tasks in order: per length the dense cell first, then needles per kernel; with
    --kv, compressed decoding per length and spec ("none" first), then its needles."""
    tasks = [_cell_task(config, s, n, ids, work) for n in config.lengths for s in config.kernels if s.runs_at(n)]
    if cases:
        tasks += [_needle_task(config, s, cases) for s in config.kernels if s.needles]
    tasks += [_kv_task(config, k, n, ids) for n in config.lengths for k in config.kv_specs()]
    if cases:
        tasks += [_kv_needle_task(config, k, cases) for k in config.kv_specs()]
    return tasks


def check_causal(model: str | None) -> None:
    """OptionError unless `model` is a decoder-only causal LM, told from its config before
    any weights load: the benchmark's perplexity, KL, needle and decode measures are all
    next-token prediction over one causal stack."""
    from ..errors import OptionError
    from ..models import model_kind

    kind = model_kind(model)
    if kind != "causal":
        what = "an encoder-decoder" if kind == "encoder-decoder" else "an encoder (non-causal, no next-token logits)"
        raise OptionError(f"attnlab bench needs a decoder-only causal LM (perplexity, needles and decode are "
                          f"next-token prediction); {model} is {what}")


def run_bench(config: BenchConfig, progress=None, on_result=None) -> dict:
    """Run the benchmark; returns {"config", "rows", "needles", "summary"} and writes the files.

    on_result(task, result), if given, sees each raw task result as soon as it arrives.
    """
    from ..models import load
    from .results import assemble, write_outputs

    config.validate()
    check_causal(config.model)
    _, tokenizer = load(config.model)
    work = Path(tempfile.mkdtemp(prefix="attnlab-bench-"))
    try:
        ids = prepare_tokens(config, tokenizer, work)
        cases = needle_cases(config, tokenizer)
        tasks = plan(config, ids, cases, work)
        results, errors = [], []
        for i, task in enumerate(tasks):
            if progress:
                where = f" @ {task['length']}" if "length" in task else f" needles x{len(task['cases'])}"
                progress(i, len(tasks), f"{task['label']}{where}")
            try:
                results.append((task, _run_task(task, work, config.timeout_s, config.isolate)))
            except BenchError as exc:
                if task["label"] == DENSE or not config.keep_going:
                    raise
                errors.append(str(exc))
                continue
            if on_result:
                on_result(*results[-1])
        if progress:
            progress(len(tasks), len(tasks), "done")
        report = assemble(config, results)
        report["errors"] = errors
        write_outputs(report, Path(config.out))
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
