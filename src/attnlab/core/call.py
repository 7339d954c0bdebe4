"""What one attention call looks like to attnlab: `AttnCall` in, `KernelOutput` out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class AttnCall:
    """One call of one attention layer, as transformers hands it to the dispatcher.

    Shapes (B batch, H query heads, H_kv key/value heads, Q queries, K keys, D head dim):
      query  [B, H, Q, D]
      key    [B, H_kv, K, D]
      value  [B, H_kv, K, Dv]
      mask   [B|1, 1|H, Q, K] bool, True = the query may see the key; None = no mask was
             needed beyond `causal` (transformers skips it when nothing is padded and any
             sliding window is longer than the keys).
      bias   [B|1, 1|H, Q, K] float added to the scores, or None (models with additive
             position biases or hand-made float masks).
    Query i sits at absolute key position `q_offset + i` (keys 0..K-1 include the cache).
    """

    layer: int
    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    mask: torch.Tensor | None
    scaling: float
    causal: bool
    sliding_window: int | None = None
    softcap: float | None = None
    dropout: float = 0.0
    bias: torch.Tensor | None = None
    module: Any = None
    kwargs: dict = field(default_factory=dict)

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
    def q_offset(self) -> int:
        """Absolute position of query 0 among the keys (the cached prefix length)."""
        return self.k_len - self.q_len

    @property
    def phase(self) -> str:
        """'prefill' (no cache yet), 'decode' (one new token on a KV cache) or 'extend'."""
        if self.q_offset == 0:
            return "prefill"
        return "decode" if self.q_len == 1 else "extend"

    @property
    def output_attentions(self) -> bool:
        return bool(self.kwargs.get("output_attentions", False))

    def visible(self, q_start: int = 0, q_end: int | None = None) -> torch.Tensor:
        """Which keys each query in [q_start, q_end) may see: bool [B|1, 1|H, q, K].

        Combines the model's mask with the causal rule when transformers passed no mask.
        """
        q_end = self.q_len if q_end is None else q_end
        if self.mask is not None:
            return self.mask[:, :, q_start:q_end, :]
        device = self.query.device
        if not self.causal:
            return torch.ones(1, 1, q_end - q_start, self.k_len, dtype=torch.bool, device=device)
        q_pos = torch.arange(q_start, q_end, device=device)[:, None] + self.q_offset
        k_pos = torch.arange(self.k_len, device=device)[None, :]
        seen = k_pos <= q_pos
        if self.sliding_window is not None:
            seen &= k_pos > q_pos - self.sliding_window
        return seen[None, None]

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
