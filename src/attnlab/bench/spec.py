"""What a benchmark run measures: kernel specs and the run's configuration.

A kernel spec is `name[:param=value,...][@option=value...]`, e.g.
`streaming:sinks=4,window=1020` or `eager@repeats=1@needles=0`. The `@` options change
how the benchmark treats that kernel: `repeats` (timed prefills), `needles` (0 skips the
needle test, e.g. for a kernel measured only for memory), `min_length` / `max_length`
(skip shorter / longer lengths, to spend a CPU budget where it matters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OptionError, SpecError

DENSE = "sdpa"
BENCH_OPTIONS = ("repeats", "needles", "min_length", "max_length")

# Parameters under which each sparse kernel computes every visible pair: the parity check
# runs the kernel with these and requires equality with dense. Exact kernels use their own.
FULL_BUDGET: dict[str, dict] = {
    "streaming": {"sinks": 0, "window": 1 << 30},
    "block_topk": {"topk": 1 << 20},
    "flexprefill": {"gamma": 1.0},
    "window": {"window": 1 << 30},
    "hybrid": {"window": 1 << 30},  # every key in the softmax window: exactly softmax
}
EXACT = ("eager", "sdpa", "chunked")


@dataclass(frozen=True)
class KernelSpec:
    """One kernel to benchmark: registry name, its parameters, per-kernel bench options."""

    label: str  # as shown in tables, e.g. "streaming:sinks=4,window=1020"
    name: str
    params: dict
    repeats: int | None = None  # None: the run's --repeats
    needles: bool = True
    max_length: int | None = None  # None: every length of the run
    min_length: int = 0

    def runs_at(self, length: int) -> bool:
        """Whether this kernel is measured at `length` tokens."""
        return self.min_length <= length and (self.max_length is None or length <= self.max_length)

    def parity_params(self) -> dict | None:
        """Parameters for the parity check, or None when no full-budget setting is known."""
        if self.name in EXACT:
            return dict(self.params)
        full = FULL_BUDGET.get(self.name)
        if full is None:
            return None
        from ..kernels import get_kernel

        valid = get_kernel(self.name).params()
        if not set(full) <= set(valid):
            return None
        return {**self.params, **full}


def split_kernels(text: str) -> list[str]:
    """'a:x=1,y=2,b,c:z=3' -> ['a:x=1,y=2', 'b', 'c:z=3'] (a bare key=value joins the spec before)."""
    specs: list[str] = []
    for item in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        head = item.split("@", 1)[0]
        if "=" in head and ":" not in head and specs:
            specs[-1] += "," + item
        else:
            specs.append(item)
    return specs


def parse_kernel(text: str) -> KernelSpec:
    """One spec string -> KernelSpec, validated against the kernel registry."""
    from ..kernels import parse_spec

    core, *options = text.split("@")
    name, params = parse_spec(core)
    bench = {}
    for opt in options:
        key, eq, value = opt.partition("=")
        if not eq or key not in BENCH_OPTIONS or not value.strip().isdigit():
            raise SpecError(f"bad bench option {opt!r} in {text!r}; valid: "
                             + ", ".join(f"@{o}=N" for o in BENCH_OPTIONS))
        bench[key] = int(value)
    return KernelSpec(core.strip(), name, params, bench.get("repeats"), bool(bench.get("needles", 1)),
                      bench.get("max_length"), bench.get("min_length", 0))


def split_kv(text: str | None) -> tuple:
    """--kv "none,snapkv:ratio=0.5,keep_last=8,streaming:ratio=0.5" -> one spec per policy.

    A comma starts a new spec only where the next item names a policy (`name:` or a bare
    name); otherwise it separates that spec's parameters."""
    if not text:
        return ()
    from ..kv import policy_names

    names, specs = set(policy_names()), []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        head = item.split(":", 1)[0]
        if head in names and ("=" not in head):
            specs.append(item)
        elif specs:
            specs[-1] += "," + item
        else:
            raise SpecError(f"--kv: {item!r} does not start with a policy name; valid: {', '.join(sorted(names))}")
    return tuple(specs)


def parse_kernels(text: str) -> list[KernelSpec]:
    """The --kernels list; the dense baseline (sdpa) is always measured, listed or not."""
    specs = [parse_kernel(s) for s in split_kernels(text)]
    labels = [s.label for s in specs]
    dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dupes:
        raise OptionError(f"kernel(s) listed twice: {', '.join(dupes)}")
    dense = [s for s in specs if s.label == DENSE]
    return (dense or [KernelSpec(DENSE, DENSE, {})]) + [s for s in specs if s.label != DENSE]


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """'2048,4096' -> (2048, 4096); positive integers only."""
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise OptionError(f"bad {what} {text!r}; expected integers like 2048,4096") from None
    if not values or min(values) <= 0:
        raise OptionError(f"bad {what} {text!r}; expected positive integers")
    return values


@dataclass
class BenchConfig:
    """One benchmark run (see `attnlab bench --help`)."""

    out: Path
    model: str = "smollm2-135m"
    kernels: list = field(default_factory=lambda: parse_kernels("chunked"))
    lengths: tuple = (2048, 4096)
    corpus: str = "austen:prideprejudice"
    needles: int = 20
    needle_lengths: tuple = (1024, 2048)
    repeats: int = 3
    decode_steps: int = 8
    kl_positions: int = 128
    ppl_last: int | None = None  # score only the last N tokens (None: all)
    parity_tokens: int = 256
    max_new_tokens: int = 6
    isolate: bool = True  # each task in a fresh process (peak RSS per cell); False: in this one
    keep_going: bool = False  # a failing non-dense kernel is reported in "errors", the run goes on
    threads: int = 0  # torch threads per worker (0: torch's default)
    timeout_s: float = 3600.0
    kv: tuple = ()  # KV-cache specs for compressed decoding ("none" is added as the baseline)
    kv_new_tokens: int = 16

    def validate(self) -> None:
        if self.repeats < 1:
            raise OptionError("--repeats must be >= 1")
        if self.needles < 0:
            raise OptionError("--needles must be >= 0")
        if self.needles and self.needles < len(self.needle_lengths):
            raise OptionError(f"--needles {self.needles} is fewer than one per needle length")
        if self.threads < 0:
            raise OptionError("--threads must be >= 0")
        if self.ppl_last is not None and self.ppl_last < 2:
            raise OptionError("--ppl-last must be >= 2")
        if self.kv:
            from ..kv import parse as parse_kv

            for text in self.kv:
                parse_kv(text)  # SpecError naming the policy and the bad parameter
            if self.kv_new_tokens < 3:
                raise OptionError("--kv-new-tokens must be >= 3 (decode speed needs two timed steps)")

    def kv_specs(self) -> list[str]:
        """The KV specs to run, the uncompressed baseline "none" first."""
        return ["none"] + [k for k in self.kv if k != "none"] if self.kv else []
