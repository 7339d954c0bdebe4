"""One forward that records every layer's queries and keys, and the attention rows they imply.

The explanation methods never hold all layers' n x n maps. `capture()` runs the model once
(SDPA kernel, no maps are formed) and keeps, per layer, the AttnCall with its query
[1, H, T, D] and key [1, H_kv, T, D] (values dropped). `head_mean_rows()` then recomputes
the head-averaged attention rows of any chosen queries of one layer, with exactly the
eager kernel's arithmetic (scaling, soft-cap, bias, causal/sliding-window/padding mask).
Memory: L * T * (H + H_kv) * D floats for the capture (SmolLM2 at 4096 tokens: ~0.4 GB)
instead of L * H * T^2 for all maps (~18 GB).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch

from ..core.call import AttnCall

Progress = Callable[[str, int, int], None]  # (what, done, total)


def require_decoder_only(model, what: str = "attnlab explain") -> None:
    """OptionError unless `model` is a decoder-only causal LM: the explanation methods follow
    one stack of causal layers from the passages to the answer's next-token logits; an
    encoder has no next-token objective and an encoder-decoder splits the path over
    encoder, decoder and cross-attention."""
    from ..errors import OptionError
    from ..models import loaded_kind

    kind = loaded_kind(model)
    if kind != "causal":
        raise OptionError(f"{what} needs a decoder-only causal LM; {type(model).__name__} is "
                          f"{'an encoder-decoder' if kind == 'encoder-decoder' else 'an encoder (no next-token logits)'}"
                          " (its attention can be inspected with `attnlab inspect`)")


class _Recorder:
    """Observer that keeps a trimmed copy of each site's (single-sequence) AttnCall."""

    def __init__(self):
        self.calls: dict = {}  # Site -> AttnCall

    def on_call(self, call: AttnCall) -> None:
        if call.batch != 1:
            raise ValueError(f"explanations take one sequence at a time, got a batch of {call.batch}")
        self.calls[call.site] = replace(
            call, query=call.query.detach(), key=call.key.detach(),
            value=call.value[..., :0].detach(), module=None, kwargs={},
        )


def base_model(model):
    """The transformer without its LM head (logits at 4096 tokens would cost ~0.8 GB)."""
    return getattr(model, "base_model", None) or model


def capture(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[AttnCall]:
    """Run one forward of the base model and return its AttnCalls, ordered by layer.

    input_ids [1, T]. Every call is a prefill over the whole sequence (K = T). The methods
    chain layers of one stack, so a model with several stacks (encoder-decoder, vision +
    text) is refused with an OptionError naming them.
    """
    from ..core.session import attach
    from ..errors import OptionError
    from ..models import trunk

    rec = _Recorder()
    kwargs = {"input_ids": input_ids}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    with attach(model, kernel="sdpa", observe=[rec]), torch.no_grad():
        trunk(model, kwargs)(**kwargs)
    names = sorted({site.name for site in rec.calls})
    if len(names) > 1:
        raise OptionError(f"the explanation methods follow one stack of layers; {type(model).__name__} has "
                          f"several ({', '.join(names)})")
    return [rec.calls[site] for site in sorted(rec.calls)]


def head_rows(call: AttnCall, idx: torch.Tensor) -> torch.Tensor:
    """Attention probabilities of the queries at positions idx [q], every head: [H, q, K] fp32.

    The same logits as every kernel (`core.scores`), for an arbitrary set of queries.
    """
    from ..core import scores as sc

    rows, pos = [], idx.tolist()
    start = 0
    for end in range(1, len(pos) + 1):  # one logits call per run of consecutive positions
        if end == len(pos) or pos[end] != pos[end - 1] + 1:
            q0, q1 = pos[start], pos[end - 1] + 1
            rows.append(sc.probs(call, sc.logits(call, q0, q1)))  # [1, H, q, K]
            start = end
    return torch.cat(rows, dim=2)[0]


def head_mean_rows(call: AttnCall, idx: torch.Tensor) -> torch.Tensor:
    """Head-averaged attention rows of the queries at positions idx [q]: [q, K] fp32."""
    return head_rows(call, idx).mean(dim=0)


def blocks(idx: torch.Tensor, block_size: int):
    """Split an index vector [n] into consecutive chunks of at most block_size."""
    for start in range(0, len(idx), block_size):
        yield idx[start:start + block_size]


def encode_ids(model, tokenizer, text: str, max_tokens: int | None = None) -> torch.Tensor:
    """input_ids [1, T] of one text (InputError when empty or too long)."""
    from ..text import encode

    return encode(model, tokenizer, text, max_tokens=max_tokens)["input_ids"]


def targets_of(target, n: int) -> torch.Tensor:
    """Target position(s) (int or list, negative counts from the end) as a LongTensor [t]."""
    items = [target] if isinstance(target, int) else list(target)
    if not items:
        raise ValueError("give at least one target position")
    out = []
    for t in items:
        if not -n <= int(t) < n:
            raise ValueError(f"target position {t} is outside the {n}-token input")
        out.append(int(t) % n)
    return torch.tensor(sorted(set(out)), dtype=torch.long)
