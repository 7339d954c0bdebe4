"""Which heads a modifier acts on: (stack, layer, head) triples, layer ranges, `all`, or a head kind.

A `Heads` answers one question per attention call: which query heads of this call's site
are selected (`index(layer, num_heads, stack)` -> LongTensor of head indices, or None).
Heads are always query heads, so GQA models are steered per query head.

Text forms (used by the CLI spec parser, no commas inside a value):
  layers  "all" | "3" | "0-5" | "0-5;10;12-13" | "encoder:0-5;decoder.cross:1"
  heads   "all" | "3:1;5:2" | "7:0-3" | "decoder:3:1;encoder:0:0-2"
          (layer:head or stack:layer:head, head ranges allowed, joined by ';')
A layer or head without a stack is the short form for single-stack models: on a model
with several stacks (encoder-decoder, vision + text) it is an error at the first call of
a second stack, never a silent selection in every stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heads:
    """A set of heads. pairs=None and layers=None means every head of every layer.

    layers: frozenset of layer indices whose heads are all selected (or None)
    pairs:  frozenset of (layer, head) selected individually (or None)
    """

    layers: frozenset | None = None  # of (stack or None, layer)
    pairs: frozenset | None = None  # of (stack or None, layer, head)
    _stacks: set = field(default_factory=set, compare=False, repr=False)  # stacks seen by short forms

    @property
    def everything(self) -> bool:
        return self.layers is None and self.pairs is None

    def index(self, layer: int, num_heads: int, stack: str | None = None):
        """Selected query heads of `layer` of `stack` (a site name such as "decoder" or
        "decoder.cross"): LongTensor [n] (n >= 1), or None if none."""
        import torch

        if self.everything:
            return torch.arange(num_heads)
        self._check_short(stack)
        if any(l == layer and s in (None, stack) for s, l in (self.layers or ())):
            chosen = list(range(num_heads))
        else:
            chosen = sorted(h for (s, l, h) in (self.pairs or ()) if l == layer and s in (None, stack)
                            and h < num_heads)
        return torch.tensor(chosen, dtype=torch.long) if chosen else None

    def _check_short(self, stack: str | None) -> None:
        """A selection without stacks serves one stack only; a second one is an error."""
        short = any(s is None for s, *_ in (self.layers or ())) or any(s is None for s, *_ in (self.pairs or ()))
        if not short or stack is None:
            return
        self._stacks.add(stack)
        if len(self._stacks) > 1:
            raise ValueError(f"this model has several attention stacks ({', '.join(sorted(self._stacks))}); "
                             "say which one a layer or head is in, e.g. heads=decoder:3:1 or layers=encoder:0-5")

    def as_pairs(self, num_layers: int, num_heads: int) -> list[tuple[int, int]]:
        """Every selected (layer, head), for a model of that shape."""
        return [(l, h) for l in range(num_layers) for h in range(num_heads)
                if (idx := self.index(l, num_heads)) is not None and h in idx.tolist()]

    def describe(self) -> str:
        if self.everything:
            return "all heads"
        parts = []
        if self.layers is not None:
            for stack in sorted({s or "" for s, _ in self.layers}):
                ints = sorted(l for s, l in self.layers if (s or "") == stack)
                parts.append(f"layers {stack + ':' if stack else ''}{format_ints(ints)}")
        if self.pairs:
            parts.append(f"{len(self.pairs)} heads")
        return ", ".join(parts)


def select(layers=None, heads=None) -> Heads:
    """Build a Heads from Python values or their text forms.

    layers: None, "all", an int, an iterable of ints (range(6)) or of (stack, layer), or text
            "0-5;10" / "encoder:0-5"
    heads:  None, "all", an iterable of (layer, head) pairs or (stack, layer, head) triples,
            or text "3:1;5:0-2" / "decoder.cross:3:1"
    Both None (or "all") selects every head; both given selects their union.
    """
    if _is_all(layers) or _is_all(heads) or (layers is None and heads is None):
        return Heads()
    layer_set = None if layers is None else frozenset(_layers(layers))
    pair_set = None if heads is None else frozenset(_pairs(heads))
    return Heads(layer_set, pair_set)


def _is_all(value) -> bool:
    return isinstance(value, str) and value.strip().lower() == "all"


def _ints(value, what: str) -> list[int]:
    if isinstance(value, int):
        out = [value]
    elif isinstance(value, str):
        out = [i for part in value.split(";") if part.strip() for i in _int_range(part, what)]
    else:
        out = [int(v) for v in value]
    if any(i < 0 for i in out):
        raise ValueError(f"{what}: indices must be >= 0, got {value!r}")
    return out


def _layers(value) -> list[tuple[str | None, int]]:
    """(stack or None, layer) from an int, ints, (stack, layer) pairs or text 'encoder:0-5;7'."""
    if isinstance(value, str):
        out = []
        for part in filter(None, (p.strip() for p in value.split(";"))):
            stack, colon, rest = part.rpartition(":")
            out += [(stack.strip() or None, l) for l in _ints(rest, "layers")]
        return out
    if isinstance(value, int):
        return [(None, l) for l in _ints(value, "layers")]
    items = list(value)
    if items and isinstance(items[0], tuple):
        return [(str(s), int(l)) for s, l in items]
    return [(None, l) for l in _ints(items, "layers")]


def _int_range(text: str, what: str) -> list[int]:
    text = text.strip()
    try:
        if "-" in text:
            a, b = text.split("-", 1)
            return list(range(int(a), int(b) + 1))
        return [int(text)]
    except ValueError:
        raise ValueError(f"bad {what} {text!r}: expected N or A-B (e.g. '0-5;10')") from None


def _pairs(value) -> list[tuple[str | None, int, int]]:
    """(stack or None, layer, head) from pairs, triples or text '3:1;decoder.cross:5:0-2'."""
    if not isinstance(value, str):
        return [(None, int(t[0]), int(t[1])) if len(t) == 2 else (str(t[0]), int(t[1]), int(t[2]))
                for t in value]
    out = []
    for part in filter(None, (p.strip() for p in value.split(";"))):
        fields = part.split(":")
        if len(fields) not in (2, 3):
            raise ValueError(f"bad head {part!r}: expected layer:head or stack:layer:head (e.g. '3:1;5:0-2')")
        stack = fields[0].strip() if len(fields) == 3 else None
        layer, hs = fields[-2], fields[-1]
        out += [(stack, l, h) for l in _int_range(layer, "layer") for h in _int_range(hs, "head")]
    return out


def format_ints(values: list[int]) -> str:
    """[0,1,2,5] -> '0-2;5' (the text form `select` reads back)."""
    runs, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            runs.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ";".join(runs)


def format_pairs(pairs) -> str:
    """[(3, 1), (5, 2)] -> '3:1;5:2', triples -> 'decoder:3:1' (the text form `select` reads back)."""
    def one(t):
        return ":".join(str(x) for x in t if x is not None)
    return ";".join(one(t) for t in sorted(pairs, key=lambda t: tuple("" if x is None else x for x in t)))


def scale_output(heads: Heads, call, output, factor: float):
    """output [B, Q, H, Dv] with the selected heads of this layer multiplied by `factor`."""
    idx = heads.index(call.layer, call.num_heads, call.site.name)
    if idx is None:
        return output
    output = output.clone()
    output[:, :, idx.to(output.device)] *= factor
    return output
