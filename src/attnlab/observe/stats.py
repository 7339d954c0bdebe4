"""HeadStats: per-(layer, head) attention statistics, streamed one query block at a time.

The observer sees the probabilities of one query block of one layer, `[B, H, q, K]`, adds
what it needs to small per-layer running sums and lets the block go, so the whole pass
never holds more than one block of one layer's map. Statistics (p_i(j) = probability
that query i puts on key j; i, j count from the first real token of each batch row):

  entropy        mean_i  H_i = -sum_j p_i(j) ln p_i(j)                        nats
  entropy_norm   mean_i  H_i / ln(n_i), over queries with n_i >= 2 visible keys
  sink_mass      mean_{i>=1} p_i(0)
  prev_token     mean_{i>=1} p_i(i-1)
  self_mass      mean_i  p_i(i)
  mean_distance  mean_i  sum_j p_i(j) (i - j)    (|i - j| for non-causal calls)   tokens
  local_mass     mean_i  sum_{|i-j| < window} p_i(j)
  received[j]    mean of p_i(j) over the real queries i != j that may see key j

Means run over the real (non-padding) query positions of all batch rows pooled; the
received attention is kept per batch row. Only prefill calls (no KV cache) are counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

SCALARS = ("entropy", "entropy_norm", "sink_mass", "prev_token", "self_mass", "mean_distance", "local_mass")


@dataclass
class _LayerSums:
    """Running sums of one layer; [H] vectors unless noted."""

    entropy: torch.Tensor
    entropy_norm: torch.Tensor
    sink_mass: torch.Tensor
    prev_token: torch.Tensor
    self_mass: torch.Tensor
    mean_distance: torch.Tensor
    local_mass: torch.Tensor
    n_norm: torch.Tensor  # [H] queries counted by entropy_norm
    received: torch.Tensor  # [B, H, K] sum of p_i(j) over real queries i != j
    support: torch.Tensor  # [B, 1|H, K] number of such queries that see j
    n_query: float = 0.0  # real queries
    n_after: float = 0.0  # real queries with i >= 1 (sink_mass, prev_token)


def _zeros(b: int, h: int, k: int) -> _LayerSums:
    vec = [torch.zeros(h, dtype=torch.float64) for _ in range(8)]
    return _LayerSums(*vec, received=torch.zeros(b, h, k), support=torch.zeros(b, 1, k))


@dataclass
class HeadStats:
    """Observer that accumulates the statistics above for every (layer, head).

    real: bool [B, T] marking real (non-padding) tokens, e.g. the tokenizer's
    attention_mask; None = every position is real. Padding must be contiguous
    (left or right), as tokenizers make it. local_window: w of `local_mass`.
    on_layer: optional callback(layer) called when a layer's first block arrives.
    """

    real: torch.Tensor | None = None
    local_window: int = 32
    on_layer: object = None
    layers: dict = field(default_factory=dict)
    heads: dict = field(default_factory=dict)  # layer -> number of query heads

    def on_probs(self, call, q_start: int, probs: torch.Tensor) -> None:
        """Fold one query block (probs [B, H, q, K] fp32, all keys) into the layer's sums."""
        if call.phase != "prefill":
            return
        lo, hi = key_range(call, q_start, q_start + probs.shape[2])
        self.on_block(call, q_start, probs[..., lo:hi], lo)

    def on_block(self, call, q_start: int, probs: torch.Tensor, k_start: int, scores=None,
                 rows: dict | None = None) -> None:
        """Fold one query block given on its visible key range only.

        probs [B, H, q, K'] fp32 for keys [k_start, k_start + K'), which must hold every
        key a query of the block may see (`key_range`); scores: the matching masked logits
        [B, H, q, K'] or None. With scores, H_i = lse_i - sum_j p_i(j) s_ij (no logarithm
        per element); lse_i = max_j s_ij - ln max_j p_i(j) unless rows["lse"] gives it.
        rows: optional per-query values a kernel already has, [B, H, q]: "lse" and
        "key_mean" (sum_j p_i(j) j, used for mean_distance of causal calls).
        """
        rows = rows or {}
        if call.phase != "prefill":
            return
        b, h, q, kk = probs.shape
        self._layer(call, b, h)
        sums = self.layers[call.layer]
        real, start = self._rows(b, call.k_len, probs.device)  # [B, K] float, [B] long
        rq = real[:, q_start:q_start + q]  # [B, q] 1.0 for real queries
        lo, hi = k_start, k_start + kk
        # which keys each query sees: only built when the mask is not a function of positions
        vis = None if call.mask is None else call.visible(q_start, q_start + q)[..., lo:hi]  # [B|1, 1|H, q, K']
        self._entropy(sums, probs, scores, rows.get("lse"), vis, rq, call, q_start)
        self._diagonals(sums, probs, rq, start, q_start, lo)
        self._distance(sums, probs, rows.get("key_mean"), rq, call, q_start, lo)
        self._received(sums, probs, vis, rq, call, q_start, lo)
        sums.n_query += float(rq.sum())

    def _layer(self, call, b: int, h: int) -> None:
        if call.layer not in self.layers:
            self.layers[call.layer] = _zeros(b, h, call.k_len)
            self.heads[call.layer] = h
            if self.on_layer is not None:
                self.on_layer(call.layer)

    def _rows(self, b: int, k: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.real is None:
            return torch.ones(b, k, device=device), torch.zeros(b, dtype=torch.long, device=device)
        real = self.real.to(device=device, dtype=torch.bool)[:, :k]
        if real.shape[0] != b:
            raise ValueError(f"HeadStats: real has {real.shape[0]} rows, the input has {b}")
        return real.float(), real.float().argmax(dim=1)

    def _entropy(self, sums, pk, scores, lse, vis, rq, call, q0) -> None:
        """entropy and entropy_norm from the visible key range pk [B, H, q, K']."""
        if scores is None:
            ent = torch.special.entr(pk).sum(-1)  # [B, H, q] nats
        else:
            if lse is None:
                top, idx = scores.max(-1, keepdim=True)  # [B, H, q, 1]
                lse = (top - pk.gather(-1, idx).log()).squeeze(-1)
            ent = lse - torch.einsum("bhqk,bhqk->bhq", pk, scores)  # 2x faster than vecdot on CPU
        keep = rq[:, None] > 0  # [B, 1, q]
        ent = torch.where(keep, ent, 0.0)  # padding rows may be inf / NaN
        sums.entropy += ent.sum((0, 2)).double()
        n_vis = _n_visible(call, q0, q0 + pk.shape[2], vis)  # [B|1, 1|H, q]
        use = (n_vis >= 2).float() * rq[:, None]  # [B, 1|H, q]
        norm = ent / n_vis.clamp(min=2).float().log()
        sums.entropy_norm += (norm * use).sum((0, 2)).double()
        sums.n_norm += use.expand(-1, ent.shape[1], -1).sum((0, 2)).double()

    def _diagonals(self, sums, pk, rq, start, q0, lo) -> None:
        """sink_mass p_i(first), prev_token p_i(i-1), self_mass p_i(i), by one gather."""
        b, h, q, kk = pk.shape
        i = torch.arange(q0, q0 + q, device=pk.device)[None, :].expand(b, q)  # [B, q] key index of query i
        first = start[:, None].expand(b, q)
        idx = torch.stack([first, i - 1, i], dim=-1) - lo  # [B, q, 3] relative to the key range
        inside = (idx >= 0) & (idx < kk)  # outside the range: invisible, probability 0
        got = pk.gather(-1, idx.clamp(0, kk - 1)[:, None].expand(b, h, q, 3)) * inside[:, None]  # [B, H, q, 3]
        after = rq * (i > first).float()  # [B, q] real queries at position >= 1
        sums.sink_mass += (got[..., 0] * after[:, None]).sum((0, 2)).double()
        sums.prev_token += (got[..., 1] * after[:, None]).sum((0, 2)).double()
        sums.self_mass += (got[..., 2] * rq[:, None]).sum((0, 2)).double()
        sums.n_after += float(after.sum())

    def _distance(self, sums, pk, key_mean, rq, call, q0, lo) -> None:
        """mean_distance (matrix-vector product for causal calls) and local_mass (a band)."""
        b, h, q, kk = pk.shape
        dev = pk.device
        i = torch.arange(q0, q0 + q, device=dev, dtype=torch.float32) + call.q_offset  # [q]
        j = torch.arange(lo, lo + kk, device=dev, dtype=torch.float32)  # [K']
        if call.causal and key_mean is not None:
            dist = i - key_mean  # [B, H, q]
        elif call.causal:
            dist = i - torch.matmul(pk, j)
        else:
            dist = (pk * (i[:, None] - j[None, :]).abs()).sum(-1)
        sums.mean_distance += (dist * rq[:, None]).sum((0, 2)).double()
        w = self.local_window
        blo, bhi = max(lo, int(i[0]) - w + 1), min(lo + kk, int(i[-1]) + w)
        jb = torch.arange(blo, bhi, device=dev, dtype=torch.float32)
        band = ((i[:, None] - jb[None, :]).abs() < w).float()  # [q, K'']
        local = (pk[..., blo - lo:bhi - lo] * band).sum(-1)  # [B, H, q]
        sums.local_mass += (local * rq[:, None]).sum((0, 2)).double()

    def _received(self, sums, pk, vis, rq, call, q0, lo) -> None:
        """Per key: sum of p_i(j) and count over real queries i != j that see j."""
        b, h, q, kk = pk.shape
        sums.received[:, :, lo:lo + kk] += torch.matmul(rq[:, None, None, :], pk).squeeze(2)  # [B, H, K']
        rows = torch.arange(q, device=pk.device)
        diag = pk[:, :, rows, rows + q0 - lo] * rq[:, None]  # [B, H, q] the i == j terms
        sums.received[:, :, q0:q0 + q] -= diag
        if vis is None:
            sums.support[:, :, lo:lo + kk] += _support(call, rq, q0, lo, kk)[:, None]
            return
        seen = vis.any(dim=1).float()  # [B|1, q, K']
        sums.support[:, :, lo:lo + kk] += torch.matmul(rq[:, None, :], seen)  # [B, 1, K']
        self_seen = vis[:, :, rows, rows + q0 - lo].any(dim=1, keepdim=True)  # [B|1, 1, q]
        sums.support[:, :, q0:q0 + q] -= self_seen * rq[:, None]

    def result(self) -> dict:
        """{layer: {stat: [H] float64 tensor, 'received': [B, H, K], 'support': [B, 1, K]}}."""
        out = {}
        for layer, s in sorted(self.layers.items()):
            n, after = max(s.n_query, 1.0), max(s.n_after, 1.0)
            out[layer] = {
                "entropy": s.entropy / n,
                "entropy_norm": s.entropy_norm / s.n_norm.clamp(min=1),
                "sink_mass": s.sink_mass / after,
                "prev_token": s.prev_token / after,
                "self_mass": s.self_mass / n,
                "mean_distance": s.mean_distance / n,
                "local_mass": s.local_mass / n,
                "received": s.received,
                "support": s.support,
            }
        return out


def key_range(call, q0: int, q1: int) -> tuple[int, int]:
    """The smallest key range [lo, hi) holding every key a query of [q0, q1) may see.

    Also the range where a query's probabilities can be non-zero (its masked keys get
    exactly 0), except for fully masked padding rows, which statistics skip anyway.
    """
    if call.mask is None:
        if not call.causal:
            return 0, call.k_len
        hi = call.q_offset + q1
        lo = 0 if call.sliding_window is None else max(0, call.q_offset + q0 - call.sliding_window + 1)
        return lo, hi
    vis = call.visible(q0, q1)  # [B|1, 1|H, q, K]
    cols = vis.reshape(-1, vis.shape[-1]).any(dim=0).nonzero()
    if cols.numel() == 0:
        return 0, call.k_len
    own = call.q_offset  # the range also holds each query's own key (the i == j terms)
    return min(int(cols[0]), q0 + own), max(int(cols[-1]) + 1, q1 + own)


def _support(call, rq: torch.Tensor, q0: int, lo: int, kk: int) -> torch.Tensor:
    """For calls without a mask: per key j in [lo, lo + kk), the number of real queries
    i != j of the block [q0, q0 + q) that see j, from prefix sums of rq [B, q]: [B, K'].

    Causal: query i (position p = i + q_offset) sees j iff j <= p (and p - j < window);
    without the self term that is p in (j, j + window - 1]. Non-causal: every query.
    """
    b, q = rq.shape
    prefix = torch.nn.functional.pad(rq.cumsum(1), (1, 0))  # [B, q + 1], prefix[:, k] = sum_{i < k} rq
    j = torch.arange(lo, lo + kk, device=rq.device)
    if not call.causal:
        own = j - call.q_offset - q0  # block row of key j's own query
        inside = (own >= 0) & (own < q)
        self_term = torch.where(inside, rq[:, own.clamp(0, q - 1)], 0.0)
        return prefix[:, -1:] - self_term
    window = call.sliding_window or (call.k_len + q + 1)
    first = (j - call.q_offset + 1 - q0).clamp(0, q)  # first block row with p > j
    last = (j - call.q_offset + window - q0).clamp(0, q)  # one past the last row with p - j < window
    return prefix.gather(1, last[None].expand(b, -1)) - prefix.gather(1, first[None].expand(b, -1))


def _n_visible(call, q0: int, q1: int, vis: torch.Tensor) -> torch.Tensor:
    """Number of keys each query may see: [B|1, 1|H, q] (analytic when there is no mask)."""
    if call.mask is None and call.causal:
        n = torch.arange(q0, q1, device=call.query.device) + call.q_offset + 1
        if call.sliding_window is not None:
            n = n.clamp(max=call.sliding_window)
        return n[None, None]
    if vis is None:  # non-causal without a mask: every key
        return torch.full((1, 1, q1 - q0), call.k_len, device=call.query.device)
    return vis.sum(-1)
