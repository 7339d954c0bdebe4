"""What one attention call looks like to attnlab: `AttnCall` in, `KernelOutput` out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch


class Site(NamedTuple):
    """Where a call sits in the model: its stack, its role there and its layer in that stack.

    stack: "decoder", "encoder", "vision", "text", "audio", ... (from the module's place in
    the model); role: "self" or "cross"; layer: index within the stack (0-based).
    `name` is the stack as tables and specs show it: "decoder", or "decoder.cross" for the
    cross-attention of the decoder's layers.
    """

    stack: str
    role: str
    layer: int

    @property
    def name(self) -> str:
        return self.stack if self.role == "self" else f"{self.stack}.cross"

    def __str__(self) -> str:
        return f"{self.name}:{self.layer}"


@dataclass
class AttnCall:
    """One call of one attention layer, as transformers hands it to the dispatcher.

    Shapes (B batch, H query heads, H_kv key/value heads, Q queries, K keys, D head dim,
    Dv value head dim, which may differ from D: MLA):
      query  [B, H, Q, D]
      key    [B, H_kv, K, D]
      value  [B, H_kv, K, Dv]
      mask   [B|1, 1|H, Q, K] bool, True = the query may see the key; None = nothing beyond
             `causal` and `sliding_window` (transformers skips the mask when nothing is padded).
    Score terms, all added to the scaled (and soft-capped) logits by `core.scores.logits`:
      bias          [B|1, 1|H, Q, K] float from a float mask (0 where visible), or None
      position_bias [B|1, 1|H, Q, K] float (T5-style relative position biases), or None
      sinks         [H] learned sink logits (gpt-oss `s_aux`): one extra softmax column per
                    head that takes probability mass and contributes no value, or None
      softcap       logits -> softcap * tanh(logits / softcap) before the bias terms, or None
      sliding_window  a query sees keys less than this many positions back, or None
    Positions: query i sits at absolute position `q_start + i`; key j at `k_start + j` for
    self-attention (a sliding-window cache holds only its last keys; a static cache has K
    slots at positions 0..K-1). Cross-attention keys (encoder states) have no position in
    the query's sequence: `k_start` is None and position rules (causal, windows) do not apply.
    """

    site: Site
    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    mask: torch.Tensor | None
    scaling: float
    causal: bool
    q_start: int | None = None  # None: the keys are a cached prefix plus the queries (K - Q)
    k_start: int | None = 0
    sliding_window: int | None = None
    softcap: float | None = None
    dropout: float = 0.0
    bias: torch.Tensor | None = None
    position_bias: torch.Tensor | None = None
    sinks: torch.Tensor | None = None
    module: Any = None
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.q_start is None:
            self.q_start = self.k_len - self.q_len if self.k_start is not None else 0

    @property
    def layer(self) -> int:
        return self.site.layer

    @property
    def stack(self) -> str:
        return self.site.stack

    @property
    def role(self) -> str:
        return self.site.role

    @property
    def cross(self) -> bool:
        return self.site.role == "cross"

    @property
    def batch(self) -> int:
        return self.query.shape[0]

    @property
    def num_heads(self) -> int:
        return self.query.shape[1]

    @property
    def num_kv_heads(self) -> int:
        return self.key.shape[1]

    @property
    def groups(self) -> int:
        """GQA group size: query heads per key/value head."""
        return self.num_heads // self.num_kv_heads

    @property
    def q_len(self) -> int:
        return self.query.shape[2]

    @property
    def k_len(self) -> int:
        return self.key.shape[2]

    @property
    def device(self) -> torch.device:
        return self.query.device

    @property
    def q_offset(self) -> int:
        """Key index of query 0's own position (self-attention only): q_start - k_start."""
        if self.k_start is None:
            raise ValueError(f"{self.site}: cross-attention keys have no positions among the queries")
        return self.q_start - self.k_start

    @property
    def positional(self) -> bool:
        """Whether query and key positions share one axis (self-attention)."""
        return self.k_start is not None

    @property
    def phase(self) -> str:
        """'prefill' (the first queries of the sequence), 'decode' (one new token on a cache) or 'extend'."""
        if self.q_start == 0:
            return "prefill"
        return "decode" if self.q_len == 1 else "extend"

    @property
    def has_score_terms(self) -> bool:
        """Whether anything beyond scaling, mask and position rules enters the scores."""
        return (self.bias is not None or self.position_bias is not None or self.sinks is not None
                or self.softcap is not None)

    @property
    def output_attentions(self) -> bool:
        return bool(self.kwargs.get("output_attentions", False))

    def q_positions(self, q0: int = 0, q1: int | None = None) -> torch.Tensor:
        """Absolute positions of queries [q0, q1): long [q] on the call's device."""
        q1 = self.q_len if q1 is None else q1
        return torch.arange(q0, q1, device=self.device) + self.q_start

    def k_positions(self, k0: int = 0, k1: int | None = None) -> torch.Tensor:
        """Absolute positions of keys [k0, k1): long [k] (self-attention only)."""
        k1 = self.k_len if k1 is None else k1
        return torch.arange(k0, k1, device=self.device) + (self.k_start if self.k_start is not None else 0)

    def visible(self, q0: int = 0, q1: int | None = None, k0: int = 0, k1: int | None = None) -> torch.Tensor:
        """Which keys [k0, k1) each query in [q0, q1) may see: bool [B|1, 1|H, q, k] (`core.scores`)."""
        from .scores import visible

        return visible(self, q0, q1, k0, k1)

    def kv_for_heads(self) -> tuple[torch.Tensor, torch.Tensor]:
        """key and value repeated to one per query head: [B, H, K, D], [B, H, K, Dv]."""
        if self.groups == 1:
            return self.key, self.value
        return (
            self.key.repeat_interleave(self.groups, dim=1),
            self.value.repeat_interleave(self.groups, dim=1),
        )


@dataclass
class KernelOutput:
    """What a kernel returns.

    output  [B, Q, H, Dv] (the layout transformers expects back)
    weights [B, H, Q, K] attention probabilities, or None (only eager returns them, and
            only when the model asked for `output_attentions`)
    density fraction of visible query-key pairs the kernel actually computed (1.0 = dense)
    """

    output: torch.Tensor
    weights: torch.Tensor | None = None
    density: float = 1.0


class RefusedCall(ValueError):
    """A kernel cannot serve this call exactly (raised before anything is computed)."""


def refuse(call: AttnCall, kernel: str, what: str, instead: str = "'eager', 'chunked' or 'sdpa'") -> None:
    """Raise RefusedCall naming the site, the model class and the kernel."""
    model = type(call.module).__name__ if call.module is not None else "this model"
    raise RefusedCall(f"{call.site} ({model}): kernel {kernel!r} does not support {what}; use {instead}")
