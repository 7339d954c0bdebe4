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

from ..core.scores import first_seen_key, key_range, lse_from_top

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
    received: torch.Tensor  # [B, H, K] fp64 sum of p_i(j) over real queries i != j
    support: torch.Tensor  # [B, 1|H, K] number of such queries that see j
    n_query: float = 0.0  # real queries
    n_after: float = 0.0  # real queries with i >= 1 (sink_mass, prev_token)


def _zeros(b: int, h: int, k: int, device=None) -> _LayerSums:
    vec = [torch.zeros(h, dtype=torch.float64, device=device) for _ in range(8)]
    return _LayerSums(*vec, received=torch.zeros(b, h, k, dtype=torch.float64, device=device),
                      support=torch.zeros(b, 1, k, device=device))


@dataclass
class _Open:
    """Per-query values of one prefill call still arriving block by block.

    rows [6, B, H, Q]: H_i, p_i(first), p_i(i-1), p_i(i), distance, local mass (raw, per
    query); folded into the layer's sums, weighted by the real queries, when the call's
    last block arrives, so each block costs a few writes instead of a dozen reductions.
    """

    rq: torch.Tensor  # [B, Q] 1.0 for real queries
    start: torch.Tensor  # [B] first real position
    diag: torch.Tensor  # [B, Q, 3] key index of (first, i - 1, i) per query
    rows: torch.Tensor  # [6, B, H, Q]
    n_vis: torch.Tensor | None  # [B, H, Q] visible keys per query (only for calls with a mask)
    done: int = 0  # queries received


ROWS = ("entropy", "sink", "prev", "self", "distance", "local")


@dataclass
class HeadStats:
    """Observer that accumulates the statistics above for every (layer, head).

    real: bool [B, T] marking real (non-padding) tokens, e.g. the tokenizer's
    attention_mask; None = every position is real. Padding must be contiguous
    (left or right), as tokenizers make it. local_window: w of `local_mass`.
    on_layer: optional callback(layer) called when a layer's first block arrives.
    Blocks of a call must arrive in query order (every kernel sends them so).
    """

    real: torch.Tensor | None = None
    local_window: int = 32
    on_layer: object = None
    layers: dict = field(default_factory=dict)
    heads: dict = field(default_factory=dict)  # layer -> number of query heads
    _open: dict = field(default_factory=dict, repr=False)  # layer -> _Open of the call in progress
    _bands: dict = field(default_factory=dict, repr=False)  # local_mass band masks by shape

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
        rows: optional values a kernel already has: "lse", "key_mean" (sum_j p_i(j) j, used
        for mean_distance of causal calls) and "dot" (sum_j p_i(j) s_ij), [B, H, q]; "col"
        (sum_i p_i(j) over the block's queries, [B, H, K']).
        Neither probs nor scores is kept after the call returns.
        """
        rows = rows or {}
        if call.phase != "prefill":
            return
        b, h, q, kk = probs.shape
        cur = self._begin(call, b, h) if q_start == 0 else self._open[call.site]
        if q_start != cur.done:
            raise ValueError(f"HeadStats: {call.site} got queries from {q_start}, expected {cur.done}")
        lo, q1 = k_start, q_start + q
        # which keys each query sees: only built when the mask is not a function of positions
        vis = None if call.mask is None else call.visible(q_start, q1)[..., lo:lo + kk]  # [B|1, 1|H, q, K']
        out = cur.rows[..., q_start:q1]  # [6, B, H, q]
        out[0] = _entropy(probs, scores, rows.get("lse"), rows.get("dot"))
        idx = cur.diag[:, q_start:q1] - lo  # [B, q, 3] relative to the key range
        inside = (idx >= 0) & (idx < kk)  # outside the range: invisible, probability 0
        out[1:4] = (probs.gather(-1, idx.clamp(0, kk - 1)[:, None].expand(b, h, q, 3))
                    * inside[:, None]).permute(3, 0, 1, 2)
        if call.positional:  # cross-attention has no distances (NaN in the result)
            out[4] = self._distance(call, probs, rows.get("key_mean"), q_start, lo)
            out[5] = self._local(probs, q_start + call.q_offset, lo)
        if vis is not None:
            cur.n_vis[..., q_start:q1] = vis.sum(-1)
        self._received(call, cur, probs, out[3], vis, q_start, lo, rows.get("col"))
        cur.done = q1
        if q1 == call.q_len:
            self._fold(call, cur)
            del self._open[call.site]

    def _begin(self, call, b: int, h: int) -> _Open:
        """Start a prefill call of call.layer: its sums (first call) and its per-query store."""
        if call.site not in self.layers:
            self.layers[call.site] = _zeros(b, h, call.k_len, call.device)
            self.heads[call.site] = h
            if self.on_layer is not None:
                self.on_layer(call.site)
        dev, n = call.query.device, call.q_len
        real = self.real.get(call.site.stack) if isinstance(self.real, dict) else self.real
        if real is None:
            rq, start = torch.ones(b, n, device=dev), torch.zeros(b, dtype=torch.long, device=dev)
        else:
            real = real.to(device=dev, dtype=torch.bool)[:, :n]
            if real.shape[0] != b:
                raise ValueError(f"HeadStats: real has {real.shape[0]} rows, the input has {b}")
            rq, start = real.float(), real.float().argmax(dim=1)
        if call.positional:
            i = torch.arange(n, device=dev)[None, :].expand(b, n) + call.q_offset
            diag = torch.stack([start[:, None].expand(b, n), i - 1, i], dim=-1)
        else:  # cross-attention: the first real key; no previous / own key
            first = first_seen_key(call)
            diag = torch.stack([first[:, None].expand(b, n), torch.full((b, n), -1, device=dev),
                                torch.full((b, n), -1, device=dev)], dim=-1)
        n_vis = None if call.mask is None else torch.zeros(b, h, n, device=dev)
        cur = _Open(rq=rq, start=start, diag=diag, rows=torch.zeros(len(ROWS), b, h, n, device=dev), n_vis=n_vis)
        self._open[call.site] = cur
        return cur

    def _distance(self, call, pk, key_mean, q0: int, lo: int) -> torch.Tensor:
        """sum_j p_i(j) (i - j) per query (|i - j| for non-causal calls): [B, H, q]."""
        q, kk = pk.shape[2], pk.shape[3]
        i = torch.arange(q0, q0 + q, device=pk.device, dtype=torch.float32) + call.q_offset  # [q]
        j = torch.arange(lo, lo + kk, device=pk.device, dtype=torch.float32)  # [K']
        if call.causal:
            mean = torch.matmul(pk, j) if key_mean is None else key_mean  # sum_j p_i(j) j
            # sum_j p_i(j) (i - j) = i sum_j p_i(j) - mean: rows with sink logits sum to < 1
            return (i if call.sinks is None else i * pk.sum(-1)) - mean
        return (pk * (i[:, None] - j[None, :]).abs()).sum(-1)

    def _local(self, pk, i0: int, lo: int) -> torch.Tensor:
        """Mass on keys |i - j| < window per query (query i = i0 + row): [B, H, q]."""
        q, kk, w = pk.shape[2], pk.shape[3], self.local_window
        blo, bhi = max(lo, i0 - w + 1), min(lo + kk, i0 + q - 1 + w)  # the keys of the band
        key = (q, i0 - blo, bhi - blo)  # the band's shape in block coordinates
        if key not in self._bands:
            i = torch.arange(i0, i0 + q, dtype=torch.float32, device=pk.device)
            j = torch.arange(blo, bhi, dtype=torch.float32, device=pk.device)
            self._bands[key] = ((i[:, None] - j[None, :]).abs() < w).float().to(pk.device)  # [q, K'']
        return torch.einsum("bhqk,qk->bhq", pk[..., blo - lo:bhi - lo], self._bands[key])  # no copy of the slice

    def _received(self, call, cur: _Open, pk, own, vis, q0: int, lo: int, col=None) -> None:
        """Per key: sum of p_i(j) and count over real queries i != j that see j.

        col: sum_i p_i(j) over every query of the block, [B, H, K'], when the kernel has it.
        Sums run in fp64 across blocks (a sink key's sum reaches thousands).
        """
        b, h, q, kk = pk.shape
        sums = self.layers[call.site]
        rq = cur.rq[:, q0:q0 + q]  # [B, q]
        padded = bool((rq < 1).any())
        if col is None:  # torch's sum is pairwise, more exact than a matrix-vector product
            col = (pk * rq[:, None, :, None] if padded else pk).sum(2)  # [B, H, K']
        elif padded:  # take the padding queries' rows back out
            col = col - (pk * (1 - rq)[:, None, :, None]).sum(2)
        sums.received[:, :, lo:lo + kk] += col
        if call.positional:
            sums.received[:, :, q0 + call.q_offset:q0 + call.q_offset + q] -= (own * rq[:, None]).double()  # i == j
        if vis is None:  # counted for the whole call at once (`_fold`)
            return
        rows = torch.arange(q, device=pk.device)
        seen = vis.any(dim=1).float()  # [B|1, q, K']
        sums.support[:, :, lo:lo + kk] += torch.matmul(rq[:, None, :], seen)  # [B, 1, K']
        if not call.positional:
            return
        self_seen = vis[:, :, rows, rows + q0 - lo].any(dim=1, keepdim=True)  # [B|1, 1, q]
        sums.support[:, :, q0:q0 + q] -= self_seen * rq[:, None]

    def _fold(self, call, cur: _Open) -> None:
        """Add a finished call's per-query values, weighted by its real queries, to the sums."""
        sums = self.layers[call.site]
        b, n = cur.rq.shape
        w = cur.rq[:, None]  # [B, 1, Q]
        if call.positional:
            pos = torch.arange(n, device=w.device) + call.q_offset
            after = w * (pos[None] > cur.start[:, None]).float()[:, None]  # real queries at position >= 1
        else:
            after = w
        rows = torch.where(w > 0, cur.rows, 0.0)  # padding rows may be inf / NaN
        ent, first, prev, own, dist, local = rows
        sums.entropy += ent.sum((0, 2)).double()
        n_vis = _n_visible(call, 0, n, None) if cur.n_vis is None else cur.n_vis  # [B|1, 1|H, Q]
        use = (n_vis >= 2).float() * w
        sums.entropy_norm += (ent / n_vis.clamp(min=2).float().log() * use).sum((0, 2)).double()
        sums.n_norm += use.expand_as(ent).sum((0, 2)).double()
        sums.sink_mass += (first * after).sum((0, 2)).double()
        sums.prev_token += (prev * after).sum((0, 2)).double()
        sums.self_mass += (own * w).sum((0, 2)).double()
        sums.mean_distance += (dist * w).sum((0, 2)).double()
        sums.local_mass += (local * w).sum((0, 2)).double()
        if cur.n_vis is None:
            sums.support += _support(call, cur.rq, 0, 0, call.k_len)[:, None]
        sums.n_query += float(cur.rq.sum())
        sums.n_after += float(after.sum())

    def result(self) -> dict:
        """{site: {stat: [H] float64 tensor, 'received': [B, H, K], 'support': [B, 1, K]}}.

        Sites are `core.call.Site` (stack, role, layer); cross-attention sites have NaN
        prev_token, self_mass, mean_distance and local_mass.
        """
        if self._open:
            layer, cur = next(iter(self._open.items()))
            raise RuntimeError(f"HeadStats: layer {layer}'s prefill stopped after {cur.done} of "
                               f"{cur.rq.shape[1]} queries; its statistics are incomplete")
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
            if layer.role == "cross":  # no shared positions: these are not defined
                for stat in ("prev_token", "self_mass", "mean_distance", "local_mass"):
                    out[layer][stat] = torch.full_like(s.entropy, float("nan"))
        return out


def _entropy(pk, scores, lse, dot=None) -> torch.Tensor:
    """H_i = -sum_j p_i(j) ln p_i(j) per query of the block, [B, H, q] nats.

    = lse_i - sum_j p_i(j) s_ij; dot: that sum when the kernel has it (with lse).
    """
    if dot is not None and lse is not None:
        return lse - dot
    if scores is None:
        return torch.special.entr(pk).sum(-1)
    if lse is None:
        lse = lse_from_top(scores, pk)
    return lse - torch.einsum("bhqk,bhqk->bhq", pk, scores)  # 2x faster than vecdot on CPU


def _support(call, rq: torch.Tensor, q0: int, lo: int, kk: int) -> torch.Tensor:
    """For calls without a mask: per key j in [lo, lo + kk), the number of real queries
    i != j of the block [q0, q0 + q) that see j, from prefix sums of rq [B, q]: [B, K'].

    Causal: query i (position p = i + q_offset) sees j iff j <= p (and p - j < window);
    without the self term that is p in (j, j + window - 1]. Non-causal: every query.
    """
    b, q = rq.shape
    prefix = torch.nn.functional.pad(rq.cumsum(1), (1, 0))  # [B, q + 1], prefix[:, k] = sum_{i < k} rq
    j = torch.arange(lo, lo + kk, device=rq.device)
    if not call.positional:  # cross-attention: every real query sees every key
        return prefix[:, -1:].expand(b, kk)
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
