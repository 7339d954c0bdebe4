"""`emphasize` (PASTA / VAR): move a fraction alpha of chosen heads' attention onto a span.

For each selected head and each query that can see part of the span:
    A' = (1 - alpha) A + alpha * A_span
where A_span is the row's attention restricted to the visible span tokens and
renormalised (uniform over them if the row gives them no mass). Rows that see none of
the span are unchanged.

The span is given per input as text: a substring (first occurrence) or a character range
"start-end"; the tokenizer's character offsets turn it into token positions. `prepare()`
does this for a batch of texts (the eval runner calls it per batch); `tokens=` sets
positions directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .common import check_fraction, on_heads
from .heads import Heads, select


@dataclass
class Emphasize:
    alpha: float
    span: str | None
    heads: Heads
    positions: torch.Tensor | None = field(default=None, repr=False)  # [B|1, T] bool, True = span token

    def prepare(self, tokenizer, texts: list[str], offsets) -> None:
        """Find the span in each text; offsets: [B, T, 2] character offsets of each token."""
        rows = [span_mask(offs, char_range(text, self.span)) for text, offs in zip(texts, offsets)]
        self.positions = torch.stack(rows)

    def probs(self, call, q_start, probs):  # probs [B, H, q, K] fp32
        if self.positions is None:
            raise ValueError("emphasize: no span positions; give tokens= or let the runner call prepare()")
        return on_heads(call, q_start, probs, self.heads, self._rule)

    def _rule(self, probs, visible, block):  # [B, h, q, K]
        K = probs.shape[-1]
        pos = self.positions[:, :K].to(probs.device)
        if pos.shape[-1] < K:
            pos = torch.nn.functional.pad(pos, (0, K - pos.shape[-1]))
        span = visible & pos[:, None, None, :]  # [B, h, q, K]
        mass = (probs * span).sum(-1, keepdim=True)
        count = span.sum(-1, keepdim=True)
        target = torch.where(mass > 0, probs * span / mass.clamp_min(torch.finfo(probs.dtype).tiny),
                             span / count.clamp_min(1))
        moved = (1.0 - self.alpha) * probs + self.alpha * target
        return moved.where(count > 0, probs)

    def describe(self) -> str:
        return f"emphasize alpha={self.alpha} on {self.span!r} via {self.heads.describe()}"


def emphasize(alpha: float, span: str | None = None, tokens=None, layers=None, heads=None) -> Emphasize:
    """Move `alpha` of the selected heads' attention onto `span` (substring or "a-b" chars) or `tokens`."""
    check_fraction("emphasize", alpha=alpha)
    if (span is None) == (tokens is None):
        raise ValueError("emphasize: give exactly one of span= (text) or tokens= (token positions)")
    mod = Emphasize(float(alpha), span, heads if isinstance(heads, Heads) else select(layers, heads))
    if tokens is not None:
        tokens = list(tokens)
        row = torch.zeros(max(tokens) + 1, dtype=torch.bool)
        row[tokens] = True
        mod.positions = row[None]
    return mod


def char_range(text: str, span: str) -> tuple[int, int]:
    """(start, end) characters of `span` in `text`: "a-b" is a range, anything else a substring."""
    a, dash, b = span.partition("-")
    if dash and a.strip().isdigit() and b.strip().isdigit():
        start, end = int(a), int(b)
        if not 0 <= start < end <= len(text):
            raise ValueError(f"emphasize: character range {span!r} is outside the {len(text)}-character text")
        return start, end
    start = text.find(span)
    if start < 0:
        raise ValueError(f"emphasize: span {span!r} does not occur in the text")
    return start, start + len(span)


def span_mask(offsets, chars: tuple[int, int]) -> torch.Tensor:
    """bool [T]: tokens whose character offsets [T, 2] overlap the range `chars`."""
    offs = torch.as_tensor(offsets)
    start, end = chars
    return (offs[:, 0] < end) & (offs[:, 1] > start) & (offs[:, 1] > offs[:, 0])


def span_tokens(tokenizer, text: str, span: str) -> list[int]:
    """Token positions of `span` (substring or "a-b" characters) in `text` as the tokenizer splits it."""
    enc = tokenizer(text, return_offsets_mapping=True)
    return span_mask(enc["offset_mapping"], char_range(text, span)).nonzero().flatten().tolist()
