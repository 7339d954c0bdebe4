"""Real memory and decode speed: each KV policy in its own fresh process on one 4096-token needle.

    python3 benchmarks/kv_memory.py --out benchmarks/results/kv/memory_4096.json

Per policy a new process (MALLOC_MMAP_THRESHOLD_=65536 so freed tensors leave the RSS, and
torch.set_num_threads(1)) runs `model.generate()` under attach(kv=spec) on needle 0 of
kv_needles.py, with keep_last = the question; the peak RSS is reset (clear_refs) when the
first decode step starts, so `peak_rss_decode_mb` is the decode phase's own peak. Also:
cache bytes held, decode tokens/s, prefill seconds, the answer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SPECS = ("none", "snapkv:ratio=0.5", "snapkv:ratio=0.875", "quest:page=16,tokens=512",
         "tokenselect:tokens=512", "recycled:tokens=512,every=8", "snapkv:ratio=0.25", "snapkv:ratio=0.75")


def one(spec: str, n_tokens: int, new_tokens: int, model_name: str | None = None) -> dict:
    import torch

    import attnlab
    from attnlab.bench.needles import is_correct

    sys.path.insert(0, str(Path(__file__).parent))
    from kv_needles import cases, peak_rss_mb, reset_peak_rss

    torch.set_num_threads(1)
    model, tok = attnlab.load(model_name)
    case = cases(tok, n_tokens, 5)[0]
    keep_last = len(tok(case.question, add_special_tokens=False)["input_ids"])
    from attnlab.kv.selection import SELECTIONS

    if spec != "none" and spec.split(":")[0] not in SELECTIONS:  # selection evicts nothing: no keep_last
        spec = f"{spec},keep_last={keep_last}"
    ids = tok(case.prompt, return_tensors="pt")
    stamps = []

    class Clock:
        def on_call(self, call):
            if call.layer == 0:
                stamps.append(time.perf_counter())
                if len(stamps) == 2:
                    reset_peak_rss()

    with torch.no_grad(), attnlab.attach(model, kv=spec, observe=[Clock()]) as s:
        out = model.generate(**ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tok.eos_token_id)
        held = s.kv_bytes["total"]
    text = tok.decode(out[0, ids["input_ids"].shape[1]:])
    return dict(spec=spec, n_tokens=int(ids["input_ids"].shape[1]), new_tokens=new_tokens, kv_bytes=held,
                peak_rss_decode_mb=peak_rss_mb(), prefill_seconds=stamps[1] - stamps[0],
                decode_tokens_per_s=(len(stamps) - 2) / (stamps[-1] - stamps[1]), generated=text,
                correct=is_correct(case, text))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", default=None, help="(internal) run one spec and print its JSON")
    ap.add_argument("--specs", default=";".join(SPECS), help="';'-separated KV specs")
    ap.add_argument("--n-tokens", type=int, default=4096)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--out", default="benchmarks/results/kv/memory_4096.json")
    ap.add_argument("--model", default=None, help="embedded name, folder or .gguf (default smollm2-135m)")
    ap.add_argument("--append", action="store_true", help="add rows to the --out file instead of replacing it")
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.n_tokens, args.new_tokens, args.model)))
        return
    from rich.progress import track

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", TRANSFORMERS_VERBOSITY="error")
    rows, commands = [], []
    if args.append and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        rows, commands = old["rows"], old.get("commands", [old["command"]])
    commands.append("python3 benchmarks/kv_memory.py " + " ".join(sys.argv[1:]))
    for spec in track(args.specs.split(";"), description="policies (one process each)"):
        res = subprocess.run([sys.executable, __file__, "--one", spec, "--n-tokens", str(args.n_tokens),
                              "--new-tokens", str(args.new_tokens)] + (["--model", args.model] if args.model else []),
                             capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise SystemExit(res.stderr)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
        Path(args.out).write_text(json.dumps(dict(threads=1, model=args.model or "smollm2-135m", command=commands[0],
                                                  commands=commands, rows=rows), indent=1))


if __name__ == "__main__":
    main()
