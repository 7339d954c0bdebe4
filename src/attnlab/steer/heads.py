"""Which heads a modifier acts on: (layer, head) pairs, layer ranges, `all`, or a head kind.

A `Heads` answers one question per attention call: which query heads of this layer are
selected (`index(layer, num_heads)` -> LongTensor of head indices, or None for none).
Heads are always query heads, so GQA models are steered per query head.

Text forms (used by the CLI spec parser, no commas inside a value):
  layers  "all" | "3" | "0-5" | "0-5;10;12-13"
  heads   "all" | "3:1;5:2" | "7:0-3" (layer:head or layer:head-range, joined by ';')
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Heads:
    """A set of heads. pairs=None and layers=None means every head of every layer.

    layers: frozenset of layer indices whose heads are all selected (or None)
    pairs:  frozenset of (layer, head) selected individually (or None)
    """

    layers: frozenset | None = None
    pairs: frozenset | None = None

    @property
    def everything(self) -> bool:
        return self.layers is None and self.pairs is None

    def index(self, layer: int, num_heads: int):
        """Selected query heads of `layer`: LongTensor [n] (n >= 1), or None if none."""
        import torch

        if self.everything or (self.layers is not None and layer in self.layers):
            chosen = list(range(num_heads))
        else:
            chosen = sorted(h for (l, h) in (self.pairs or ()) if l == layer and h < num_heads)
        return torch.tensor(chosen, dtype=torch.long) if chosen else None

    def as_pairs(self, num_layers: int, num_heads: int) -> list[tuple[int, int]]:
        """Every selected (layer, head), for a model of that shape."""
        return [(l, h) for l in range(num_layers) for h in range(num_heads)
                if (idx := self.index(l, num_heads)) is not None and h in idx.tolist()]

    def describe(self) -> str:
        if self.everything:
            return "all heads"
        parts = []
        if self.layers is not None:
            parts.append(f"layers {format_ints(sorted(self.layers))}")
        if self.pairs:
            parts.append(f"{len(self.pairs)} heads")
        return ", ".join(parts)


def select(layers=None, heads=None) -> Heads:
    """Build a Heads from Python values or their text forms.

    layers: None, "all", an int, an iterable of ints (range(6)), or text "0-5;10"
    heads:  None, "all", an iterable of (layer, head) pairs, or text "3:1;5:0-2"
    Both None (or "all") selects every head; both given selects their union.
    """
    if _is_all(layers) or _is_all(heads) or (layers is None and heads is None):
        return Heads()
    layer_set = None if layers is None else frozenset(_ints(layers, "layers"))
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


def _int_range(text: str, what: str) -> list[int]:
    text = text.strip()
    try:
        if "-" in text:
            a, b = text.split("-", 1)
            return list(range(int(a), int(b) + 1))
        return [int(text)]
    except ValueError:
        raise ValueError(f"bad {what} {text!r}: expected N or A-B (e.g. '0-5;10')") from None


def _pairs(value) -> list[tuple[int, int]]:
    if not isinstance(value, str):
        return [(int(l), int(h)) for l, h in value]
    out = []
    for part in filter(None, (p.strip() for p in value.split(";"))):
        layer, colon, hs = part.partition(":")
        if not colon:
            raise ValueError(f"bad head {part!r}: expected layer:head (e.g. '3:1;5:0-2')")
        out += [(l, h) for l in _int_range(layer, "layer") for h in _int_range(hs, "head")]
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
    """[(3, 1), (5, 2)] -> '3:1;5:2' (the text form `select` reads back)."""
    return ";".join(f"{l}:{h}" for l, h in sorted(pairs))


def scale_output(heads: Heads, call, output, factor: float):
    """output [B, Q, H, Dv] with the selected heads of this layer multiplied by `factor`."""
    idx = heads.index(call.layer, call.num_heads)
    if idx is None:
        return output
    output = output.clone()
    output[:, :, idx.to(output.device)] *= factor
    return output
