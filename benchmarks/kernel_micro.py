"""Time ONE attention layer of a real model under each kernel against sdpa, same run.

Captures the real query/key/value of one layer (prefill of a real passage, stopped right
after that layer), then times every kernel's forward on that exact call: median of
`--repeats` runs, ratio sdpa_time / kernel_time (> 1 = faster than sdpa), max |diff|
against sdpa and the density the kernel reports. Hold the shared lock:

    flock /tmp/attnlab-heavy.lock python benchmarks/kernel_micro.py --length 8192 \\
        --kernels "streaming,block_topk,flexprefill,window" --layers 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


class _Stop(Exception):
    pass


class _Capture:
    """Observer that keeps the AttnCall of one layer and stops the forward pass."""

    def __init__(self, layer: int):
        self.layer, self.call = layer, None

    def on_call(self, call):
        if call.layer == self.layer:
            self.call = call
            raise _Stop


# exact (budget covers everything) and fast on sliding-window layers: used to reach the layer
EXACT = ("window", {"window": 10**9})


def inputs(model_name: str, length: int):
    import attnlab
    from attnlab.bench.corpora import passage

    model, tok = attnlab.load(model_name)
    return model, attnlab.encode(model, tok, passage(tok, length + 64), max_tokens=length, truncate=True)


def capture(model_name: str, length: int, layer: int):
    """The prefill AttnCall of `layer` on `length` tokens of Hamlet."""
    import torch

    import attnlab

    model, enc = inputs(model_name, length)
    cap = _Capture(layer)
    with torch.no_grad(), attnlab.attach(model, kernel=EXACT[0], observe=[cap], **EXACT[1]):
        try:
            model(**enc)
        except _Stop:
            pass
    return cap.call


def timed(fn, repeats: int, warm: bool = False) -> tuple[float, object]:
    """Median wall time of `repeats` calls (after one untimed call if `warm`) and the last result."""
    times, out = [], fn() if warm else None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def run(model_name: str, length: int, layers: list[int], specs: list[str], repeats: int) -> list[dict]:
    import torch

    from attnlab.core.hooks import Hooks
    from attnlab.kernels import get_kernel, parse_spec

    rows = []
    for layer in layers:
        call = capture(model_name, length, layer)
        with torch.no_grad():
            dense_s, ref = timed(lambda: get_kernel("sdpa").forward(call, Hooks()), repeats, warm=True)
            for spec in specs:
                name, params = parse_spec(spec)
                sec, out = timed(lambda: get_kernel(name).forward(call, Hooks(), **params), repeats, warm=True)
                rows.append(dict(model=model_name, length=length, layer=layer, window=call.sliding_window,
                                 kernel=spec, seconds=round(sec, 4), sdpa_seconds=round(dense_s, 4),
                                 speedup=round(dense_s / sec, 2), density=round(out.density, 4),
                                 max_diff=float((out.output - ref.output).abs().max())))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def end_to_end(model_name: str, length: int, specs: list[str], repeats: int) -> list[dict]:
    """Whole-model prefill (logits of every position) under sdpa and each kernel: a profile of
    how much of the forward pass attention is."""
    import torch

    import attnlab
    from attnlab.kernels import parse_spec

    model, enc = inputs(model_name, length)
    rows, base = [], None
    for spec in ["sdpa"] + specs:
        name, params = parse_spec(spec)
        with torch.no_grad(), attnlab.attach(model, kernel=name, **params):
            sec, _ = timed(lambda: model(**enc), repeats)
        base = base or sec
        rows.append(dict(model=model_name, length=length, kernel=spec, e2e_seconds=round(sec, 2),
                         speedup=round(base / sec, 2)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--length", type=int, default=8192)
    parser.add_argument("--layers", default="3", help="comma-separated layer indices ('' for none)")
    parser.add_argument("--kernels", default="chunked,streaming,block_topk,flexprefill,window",
                        help="kernel specs separated by ';' or ','-separated names without parameters")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--e2e", action="store_true", help="also time whole-model prefill per kernel")
    args = parser.parse_args()
    specs = args.kernels.split(";") if ";" in args.kernels or ":" in args.kernels else args.kernels.split(",")
    if args.layers:
        run(args.model, args.length, [int(x) for x in args.layers.split(",")], specs, args.repeats)
    if args.e2e:
        end_to_end(args.model, args.length, specs, args.repeats)


if __name__ == "__main__":
    main()
