"""explain_context(): every method on one case, side by side, against leave-one-out ablation.

Returns the plain dict the CLI writes as explain.json and `view.render_section` renders.
Times: each attention method's seconds include the one shared capture forward.
"""

from __future__ import annotations

import time

from .capture import Progress

DEFAULT_METHODS = ("traceback", "raw_last", "raw_mean", "rollout", "flow", "attn_x_grad")


def _traceback(state, opts):
    from .traceback import aggregate, token_scores

    return aggregate(token_scores(state["calls"], state["targets"], opts.get("layers", "mean")),
                     state["spans"], opts.get("agg", "topk"), opts.get("k", 5))


def _raw(layers):
    def method(state, opts):
        from .attention import attention_from_calls
        from .traceback import aggregate

        return aggregate(attention_from_calls(state["calls"], state["targets"], layers), state["spans"], "sum")
    return method


def _rollout(state, opts):
    from .rollout import rollout_from_calls
    from .traceback import aggregate

    rel = rollout_from_calls(state["calls"], state["targets"], progress=state["progress"])
    return aggregate(rel, state["spans"], "sum")


def _flow(state, opts):
    from .flow import group_flow_from_calls

    return group_flow_from_calls(state["calls"], state["targets"], state["spans"], top_m=opts.get("top_m", 8),
                                 progress=state["progress"])


def _attn_x_grad(state, opts):
    from .gradient import gradient_from_ids
    from .traceback import aggregate

    return aggregate(gradient_from_ids(state["model"], state["ctx"].tensor(), state["targets"]), state["spans"], "sum")


METHODS = {
    "traceback": (_traceback, "attention of the answer rows, mean over layers/heads, top-k tokens per passage"),
    "raw_last": (_raw("last"), "last layer's head-averaged attention of the answer rows, summed per passage"),
    "raw_mean": (_raw("mean"), "head-averaged attention of the answer rows, mean over layers, summed per passage"),
    "rollout": (_rollout, "attention rollout (0.5 I + 0.5 A) of the answer rows, summed per passage"),
    "flow": (_flow, "max-flow from each passage's tokens to the answer rows (top-m pruned graph)"),
    "attn_x_grad": (_attn_x_grad, "|sum_h A * dlogp/dA| of the answer rows, summed over layers, per passage"),
}


def check_methods(methods) -> tuple:
    """The methods as a tuple; OptionError for an unknown one or none at all."""
    from ..errors import OptionError

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise OptionError(f"unknown method(s) {unknown}; valid: {', '.join(METHODS)}")
    if not methods:
        raise OptionError(f"give at least one method; valid: {', '.join(METHODS)}")
    return tuple(methods)


def check_case(passages, question: str, answer: str | None, agg: str = "topk") -> None:
    """OptionError / InputError for what explain_context would refuse, told before any model loads."""
    from ..errors import InputError, OptionError
    from .traceback import AGGREGATIONS

    if agg not in AGGREGATIONS:
        raise OptionError(f"unknown aggregation {agg!r}; valid: {', '.join(AGGREGATIONS)}")
    if not passages or any(not p.strip() for p in passages):
        raise InputError("the context needs at least one passage, none of them blank")
    if not question.strip() or (answer is not None and not answer.strip()):
        raise OptionError("--question and --answer must not be blank")


def check_model(model: str | None) -> None:
    """OptionError before loading anything when `model` (a name or folder) is not a
    decoder-only causal LM (from its config: `models.model_kind`)."""
    from ..errors import OptionError
    from ..models import model_kind

    kind = model_kind(model)
    if kind != "causal":
        what = "an encoder-decoder" if kind == "encoder-decoder" else "an encoder (no next-token logits)"
        raise OptionError(f"attnlab explain needs a decoder-only causal LM; {model} is {what} "
                          "(its attention can be inspected with `attnlab inspect`)")


def _ranking(scores) -> list:
    return sorted(range(len(scores)), key=lambda k: -scores[k])


def spearman(a, b):
    """Spearman rank correlation of two score lists, or None when either is constant."""
    import numpy as np
    from scipy.stats import spearmanr

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def generate_answer(model, tokenizer, ctx, max_new_tokens: int = 16) -> str:
    """Greedy continuation of passages + question, cut at the first newline."""
    import torch

    prompt = torch.tensor([ctx.prefix + [t for p in ctx.passages for t in p] + ctx.question])
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id or 0)
    text = tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True)
    return text.split("\n")[0].strip() or text.strip() or "?"


def _passages_json(ctx, passages) -> list:
    return [{"index": k, "text": text, "n_tokens": e - s, "start": s, "end": e}
            for k, (text, (s, e)) in enumerate(zip(passages, ctx.spans()))]


def _run_methods(state, methods, opts) -> dict:
    from .capture import capture

    t0 = time.perf_counter()
    state["calls"] = capture(state["model"], state["ctx"].tensor())
    forward_s = time.perf_counter() - t0
    out = {}
    for name in methods:
        t0 = time.perf_counter()
        scores = METHODS[name][0](state, opts)
        seconds = time.perf_counter() - t0 + (0.0 if name == "attn_x_grad" else forward_s)
        out[name] = {"scores": scores, "ranking": _ranking(scores), "seconds": seconds,
                     "about": METHODS[name][1]}
        if state["progress"] is not None:
            state["progress"](name, 1, 1)
    return out


def explain_context(model, tokenizer, passages: list, question: str, answer: str | None = None,
                    methods=DEFAULT_METHODS, ablation: bool = True, progress: Progress | None = None,
                    max_tokens: int | None = None, sink: int = 4, **opts) -> dict:
    """Rank `passages` by each method for the answer, and by leave-one-out ablation.

    opts: agg ("topk"|"sum"|"mean"), k (top-k tokens), layers ("mean"|"last"|[indices]) for
    traceback; top_m for flow. sink: the first `sink` tokens of the sequence are left out of
    every attention score (StreamingLLM's attention sinks soak up attention whatever they
    say, which would always credit the first passage). Returns the explain.json dict.
    """
    from .capture import require_decoder_only
    from .context import build
    from .traceback import injection_flags

    require_decoder_only(model)
    methods = check_methods(methods)
    ctx = build(tokenizer, passages, question, answer or "?")
    if answer is None:
        answer = generate_answer(model, tokenizer, ctx)
        ctx = build(tokenizer, passages, question, answer)
    _check_length(model, len(ctx.ids()), max_tokens)
    spans = [(max(s, sink), max(e, sink)) for s, e in ctx.spans()]  # the first `sink` tokens are not scored
    state = {"model": model, "ctx": ctx, "spans": spans, "targets": ctx.answer_targets(), "progress": progress}
    result = {"question": question, "answer": answer, "n_tokens": len(ctx.ids()),
              "passages": _passages_json(ctx, passages), "settings": _settings(opts, sink),
              "methods": _run_methods(state, methods, opts)}
    if ablation:
        _add_ablation(result, model, ctx, progress)
    basis = result["methods"].get("traceback") or next(iter(result["methods"].values()), None)
    if basis is not None:
        result["injection"] = injection_flags(passages, basis["scores"])
    return result


def _settings(opts, sink: int) -> dict:
    return {"sink": sink, "agg": opts.get("agg", "topk"), "k": opts.get("k", 5), "layers": opts.get("layers", "mean"),
            "top_m": opts.get("top_m", 8), "residual": 0.5}


def _check_length(model, n: int, max_tokens: int | None) -> None:
    from ..models import context_length
    from ..text import InputError

    limit = min(x for x in (max_tokens, context_length(model)) if x is not None) \
        if (max_tokens or context_length(model)) else None
    if limit is not None and n > limit:
        raise InputError(f"context is {n} tokens, longer than the limit of {limit}; drop passages")


def _add_ablation(result, model, ctx, progress) -> None:
    from .ablation import leave_one_out

    t0 = time.perf_counter()
    loo = leave_one_out(model, ctx, progress)
    result["ablation"] = {"full_log_prob": loo["full"], "without": loo["without"],
                          "scores": loo["importance"], "ranking": _ranking(loo["importance"]),
                          "seconds": time.perf_counter() - t0}
    for entry in result["methods"].values():
        entry["spearman_vs_ablation"] = spearman(entry["scores"], loo["importance"])
        entry["top1_agrees_with_ablation"] = entry["ranking"][0] == result["ablation"]["ranking"][0]


def read_context(path) -> list:
    """Passages from a file: .json (a list of strings, or {"passages": [...]}) or plain text
    (blocks separated by '---' lines, else by blank lines). Unreadable files: InputError."""
    import json

    from ..errors import InputError
    from ..text import read_text
    from .context import split_passages

    text = read_text(path, "--context")
    if str(path).endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"--context: {path} is not valid JSON ({exc})") from None
        passages = data.get("passages") if isinstance(data, dict) else data
        if not isinstance(passages, list) or not all(isinstance(p, str) for p in passages):
            raise InputError(f"{path}: expected a JSON list of strings or {{\"passages\": [...]}}")
        return passages
    return split_passages(text)


def explain_file(context, question: str, answer: str | None = None, methods=DEFAULT_METHODS,
                 model: str | None = None, out: str | None = None, progress: Progress | None = None,
                 **opts) -> dict:
    """Load the model, explain the case read from `context` and write out/explain.json
    (atomically: nothing is written on error). Returns the dict."""
    import json
    import os
    from pathlib import Path

    from ..models import load

    passages = read_context(context)
    check_methods(methods)
    check_case(passages, question, answer, opts.get("agg", "topk"))
    check_model(model)
    m, tok = load(model)
    data = explain_context(m, tok, passages, question, answer, methods, progress=progress, **opts)
    data["model"] = model or "smollm2-135m"
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        tmp = Path(out) / f".explain.json.{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(tmp, Path(out) / "explain.json")
    return data
