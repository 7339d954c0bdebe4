"""The kvpress side of the side-by-side (runs INSIDE .venv-kvpress; no attnlab import).

    .venv-kvpress/bin/python benchmarks/kv_kvpress_run.py CASES.json MODEL_DIR OUT.json [PRESSES] [RATIOS]

CASES.json: [{"ids": [...], "keep_last": n, "answer": "4817", "depth": d, "task": t,
"new_tokens": k}, ...] (written by
benchmarks/kv_kvpress.py from the same needle cases as kv_needles.py). As kvpress's own
pipeline does, the context (all but the last keep_last tokens) is prefilled under the press
and the question is fed afterwards, uncompressed; then greedy decoding. Same token ids as
the attnlab run. torch.set_num_threads(1).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

PRESSES = ("streaming", "snapkv", "h2o", "tova", "knorm", "random", "adaptive")
RATIOS = (0.25, 0.5, 0.75, 0.875)


def make_press(name: str, ratio: float):
    import kvpress as kp

    return {"streaming": lambda: kp.StreamingLLMPress(compression_ratio=ratio),
            "snapkv": lambda: kp.SnapKVPress(compression_ratio=ratio),
            "h2o": lambda: kp.ObservedAttentionPress(compression_ratio=ratio),
            "tova": lambda: kp.TOVAPress(compression_ratio=ratio),
            "knorm": lambda: kp.KnormPress(compression_ratio=ratio),
            "random": lambda: kp.RandomPress(compression_ratio=ratio),
            "adaptive": lambda: kp.AdaKVPress(kp.SnapKVPress(compression_ratio=ratio))}[name]()


def scorer():
    """attnlab's own answer scoring, loaded from its file (it needs no attnlab import)."""
    path = Path(__file__).resolve().parent.parent / "src" / "attnlab" / "bench" / "needles.py"
    spec = importlib.util.spec_from_file_location("attnlab_needles", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module.answer_score


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_one(model, ids, keep_last: int, press, new_tokens: int) -> dict:
    import torch
    from transformers import DynamicCache

    context, question = ids[:, :-keep_last], ids[:, -keep_last:]
    cache = DynamicCache()
    with torch.no_grad():
        if press is not None:
            with press(model):
                model(input_ids=context, past_key_values=cache, use_cache=True)
        else:
            model(input_ids=context, past_key_values=cache, use_cache=True)
        held = sum(l.keys.numel() * l.keys.element_size() + l.values.numel() * l.values.element_size()
                   for l in cache.layers)
        Path("/proc/self/clear_refs").write_text("5")
        n = context.shape[1]
        pos = torch.arange(n, n + keep_last)[None]
        out = model(input_ids=question, past_key_values=cache, position_ids=pos, use_cache=True)
        tokens, start = [out.logits[:, -1:].argmax(-1)], time.perf_counter()
        for i in range(new_tokens - 1):
            p = torch.tensor([[n + keep_last + i]])
            out = model(input_ids=tokens[-1], past_key_values=cache, position_ids=p, use_cache=True)
            tokens.append(out.logits[:, -1:].argmax(-1))
        seconds = time.perf_counter() - start
    return dict(tokens=torch.cat(tokens, 1)[0].tolist(), kv_bytes=held, peak_rss_decode_mb=peak_rss_mb(),
                decode_tokens_per_s=(new_tokens - 1) / seconds)


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import kvpress  # noqa: F401  (kvpress patches the attention functions on import)

    cases_file, model_dir, out_file = sys.argv[1:4]
    presses = sys.argv[4].split(",") if len(sys.argv) > 4 else PRESSES
    ratios = [float(r) for r in sys.argv[5].split(",")] if len(sys.argv) > 5 else RATIOS
    torch.set_num_threads(1)
    cases = json.loads(Path(cases_file).read_text())
    tok = AutoTokenizer.from_pretrained(model_dir)
    models = {impl: AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=impl).eval()
              for impl in ("sdpa", "eager")}
    rows, score = [], scorer()
    for ci, case in enumerate(cases):
        ids = torch.tensor([case["ids"]])
        for name, ratio in [("none", None)] + [(p, r) for r in ratios for p in presses]:
            press = None if name == "none" else make_press(name, ratio)
            model = models["eager" if name == "h2o" else "sdpa"]  # ObservedAttention needs eager weights
            r = run_one(model, ids, case["keep_last"], press, case.get("new_tokens", 8))
            text = tok.decode(r.pop("tokens"))
            got = score(case["answer"], text)
            rows.append(dict(policy=name, ratio=ratio, task=case.get("task", "needle"), depth=case["depth"],
                             answer=case["answer"], generated=text, correct=got == 1.0, score=got, **r))
            print(ci, name, ratio, rows[-1]["correct"], rows[-1]["kv_bytes"], flush=True)
            Path(out_file).write_text(json.dumps(dict(kvpress=kvpress.__version__ if hasattr(kvpress, "__version__")
                                                      else "0.5.5", rows=rows), indent=1))


if __name__ == "__main__":
    main()
