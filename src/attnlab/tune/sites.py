"""Which attention heads a model has, read off one short forward through attnlab.

Every tuner addresses heads the way the rest of attnlab does: (stack, layer, head), with
stack the site name ("decoder", "encoder", "decoder.cross"). The shapes come from the calls
themselves (query heads H, value head dim Dv), so any architecture attach() serves works.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import OptionError


@dataclass
class _Probe:
    """Observer: (stack, layer) -> (H query heads, H_kv, Dv) of the first call of each site."""

    found: dict = field(default_factory=dict)

    def on_call(self, call) -> None:
        self.found.setdefault((call.site.name, call.layer),
                              (call.num_heads, call.num_kv_heads, call.value.shape[-1]))


def head_sites(model) -> dict:
    """{(stack, layer): (H, H_kv, Dv)} of every attention site of a decoder-only `model`."""
    from ..core.session import attach

    probe = _Probe()
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad(), attach(model, kernel="eager", observe=[probe]):
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    if not probe.found:
        raise OptionError(f"{type(model).__name__}: no attention call reached attnlab, nothing to tune")
    return dict(sorted(probe.found.items()))


def all_heads(sites: dict) -> list[tuple[str, int, int]]:
    """Every (stack, layer, head) of `sites` (from head_sites), in model order."""
    return [(s, l, h) for (s, l), (H, _, _) in sites.items() for h in range(H)]


def head_budget(spec, total: int) -> int:
    """How many heads '3%', '10%', 12 or '12' means out of `total` (at least 1)."""
    text = str(spec).strip()
    try:
        k = round(total * float(text[:-1]) / 100) if text.endswith("%") else int(text)
    except ValueError:
        raise OptionError(f"--heads {spec!r}: expected a percentage ('3%') or a number of heads ('12')") from None
    if not 1 <= max(k, 1) <= total or k < 0:
        raise OptionError(f"--heads {spec!r}: must select between 1 and {total} heads")
    return max(k, 1)


def parse_heads(text: str, sites: dict) -> list[tuple[str, int, int]]:
    """Explicit heads 'layer:head;...' or 'stack:layer:head;...' (as in steer) -> triples of `sites`."""
    from ..steer.heads import select

    chosen = select(heads=text)
    stacks = {s for s, _ in sites}
    out = []
    for s, l, h in sorted(chosen.pairs or ()):
        stack = s if s is not None else (next(iter(stacks)) if len(stacks) == 1 else None)
        if stack is None or (stack, l) not in sites or h >= sites[(stack, l)][0]:
            raise OptionError(f"--heads: no head {':'.join(str(x) for x in (s, l, h) if x is not None)} in this model")
        out.append((stack, l, h))
    return out
