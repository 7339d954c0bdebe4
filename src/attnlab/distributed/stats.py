"""Per-head attention statistics of an input sharded over ranks: `head_stats`.

The statistics are those of `observe.stats.HeadStats` (entropy, sink mass, previous-token
and self mass, mean distance, local mass, received attention per key), and every one of
them is a sum over queries. So each rank streams its own queries: after the ring has
given a layer's output and each query's global log-sum-exp, the layer's key blocks go
around the ring once more; each block's probabilities p_ij = exp(s_ij - lse_i) are folded
into per-query and per-key running sums and dropped. At the end the ranks all_reduce the
sums into one HeadStats (its `_LayerSums`), whose `result()` and the DataFrame of
`observe.heads.stats_frame` are then exactly the single-process ones. No rank ever holds
more than one block of one layer's probabilities, nor another rank's queries.
"""

from __future__ import annotations

import torch

from ..core import scores as sc
from . import blocks
from .comm import Exchange

_ROWS = ("dot", "first", "prev", "self", "distance", "local", "n_vis")


class ShardSums:
    """This rank's running sums, per site, of the HeadStats statistics over its queries."""

    def __init__(self, start: torch.Tensor, local_window: int):
        self.start, self.window = start, local_window  # start [B]: first real token of each row
        self.layers: dict = {}  # site -> dict of sums

    def __call__(self, call, ring, query, key, lse, sizes) -> None:
        """Stream the probabilities of this rank's queries on every key block (one more turn)."""
        dev = query.device
        q_idx, _ = ring.block(ring.rank, dev)
        rows = torch.zeros(len(_ROWS), call.batch, call.num_heads, q_idx.numel(), dtype=torch.float64, device=dev)
        sums = self._layer(call, ring.key_valid.shape[1], dev)
        safe = torch.where(torch.isfinite(lse), lse, torch.inf)  # rows that saw nothing: p = 0
        rq = ring.key_valid[:, q_idx].float()  # [B, n] real queries
        keys = [key]
        for step in range(ring.world):
            pending = Exchange(ring, keys, tag=3) if step < ring.world - 1 else None
            k_idx, k_valid = ring.block((ring.rank - step) % ring.world, dev)
            view = blocks.global_view(call, q_idx, k_idx, k_valid)
            for q0, q1, k0, k1, vis in blocks.chunks(q_idx.numel(), k_idx.numel(), *sizes, view):
                s = sc.logits(blocks.sub_call(call, query[:, :, q0:q1], keys[0][:, :, k0:k1], vis, q0, q1, k0, k1))
                p = torch.exp(s - safe[:, :, q0:q1, None])  # [B, H, q, k]
                self._block(sums, rows[..., q0:q1], p, s, vis, q_idx[q0:q1], k_idx[k0:k1], rq[:, q0:q1], call)
            if pending is not None:
                keys = pending.wait()
        self._fold(sums, rows, lse, q_idx, rq)

    def _layer(self, call, total: int, dev) -> dict:
        if call.site not in self.layers:
            b, h = call.batch, call.num_heads
            vec = {k: torch.zeros(h, dtype=torch.float64, device=dev) for k in
                   ("entropy", "entropy_norm", "sink_mass", "prev_token", "self_mass", "mean_distance",
                    "local_mass", "n_norm")}
            self.layers[call.site] = {**vec, "received": torch.zeros(b, h, total, dtype=torch.float64, device=dev),
                                      "support": torch.zeros(b, 1, total, device=dev),
                                      "counts": torch.zeros(2, dtype=torch.float64, device=dev)}
        return self.layers[call.site]

    def _block(self, sums, rows, p, s, vis, qi, kj, rq, call) -> None:
        """Fold one block's probabilities p [B, H, q, k] (logits s, visibility vis) into the sums."""
        b, h, q, k = p.shape
        delta = (qi[:, None] - kj[None, :]).float()  # [q, k] query position - key position
        first = (kj[None, :] == self.start.to(kj.device)[:, None]).float()  # [B, k]
        rows[0] += (p * s).sum(-1).double()  # masked logits meet p = 0
        rows[1] += torch.einsum("bhqk,bk->bhq", p, first).double()
        rows[2] += (p * (delta == 1).float()).sum(-1).double()
        own = p * (delta == 0).float()  # [B, H, q, k]
        rows[3] += own.sum(-1).double()
        rows[4] += (p * (delta if call.causal else delta.abs())).sum(-1).double()
        rows[5] += (p * (delta.abs() < self.window).float()).sum(-1).double()
        seen = torch.ones(b, q, k, device=p.device) if vis is None else vis[:, 0].expand(b, q, k).float()  # [B, q, k]
        rows[6] += seen.sum(-1)[:, None].double()
        others = (delta != 0).float()  # the statistics of key j leave out query j itself
        sums["received"][:, :, kj] += torch.einsum("bhqk,bq->bhk", p * others, rq).double()
        sums["support"][:, 0, kj] += torch.einsum("bqk,bq->bk", seen * others, rq)

    def _fold(self, sums, rows, lse, qi, rq) -> None:
        """Add the per-query values of a finished call, weighted by its real queries (as HeadStats)."""
        w = rq[:, None].double()  # [B, 1, n]
        after = w * (qi[None] > self.start.to(qi.device)[:, None]).double()[:, None]
        dot, first, prev, own, dist, local, n_vis = torch.where(w > 0, rows, 0.0)
        ent = torch.where(w > 0, lse.double() - dot, 0.0)  # H_i = lse_i - sum_j p_ij s_ij
        use = (n_vis >= 2).double() * w
        sums["entropy"] += (ent * w).sum((0, 2))
        sums["entropy_norm"] += (ent / n_vis.clamp(min=2).log() * use).sum((0, 2))
        sums["n_norm"] += use.expand_as(ent).sum((0, 2))
        sums["sink_mass"] += (first * after).sum((0, 2))
        sums["prev_token"] += (prev * after).sum((0, 2))
        sums["self_mass"] += (own * w).sum((0, 2))
        sums["mean_distance"] += (dist * w).sum((0, 2))
        sums["local_mass"] += (local * w).sum((0, 2))
        sums["counts"] += torch.stack([w.sum(), after.sum()])


def _reduce(shard_sums: ShardSums, n: int, ring):
    """all_reduce every site's sums; {site: observe.stats._LayerSums} with keys cut to the n real positions."""
    import torch.distributed as dist

    from ..observe.stats import _LayerSums
    from .comm import DistributedError

    out = {}
    for site in sorted(shard_sums.layers):
        s = shard_sums.layers[site]
        vec = torch.cat([s[k] for k in _VECTORS] + [s["counts"]])
        try:
            for t in (vec, s["received"], s["support"]):
                dist.all_reduce(t)
        except RuntimeError as exc:
            raise DistributedError(f"rank {ring.rank}: reducing the statistics failed or timed out: {exc}") from exc
        h = s["entropy"].numel()
        parts = dict(zip(_VECTORS, vec[:-2].view(len(_VECTORS), h)))
        out[site] = _LayerSums(**parts, received=s["received"][..., :n], support=s["support"][..., :n],
                               n_query=float(vec[-2]), n_after=float(vec[-1]))
    return out


_VECTORS = ("entropy", "entropy_norm", "sink_mass", "prev_token", "self_mass", "mean_distance", "local_mass", "n_norm")


def run_stats(model, enc: dict, layout: str = "striped", block_size: int = 512, key_block: int = 1024,
              local_window: int = 32, timeout: float | None = None):
    """A finished `observe.stats.HeadStats` of `enc` (input_ids, attention_mask [B, T]), the
    same on every rank, computed with the input sharded over all ranks."""
    from ..models import trunk
    from ..observe.stats import HeadStats
    from .api import session
    from .comm import DEFAULT_TIMEOUT

    ids = enc["input_ids"]
    mask = enc.get("attention_mask")
    real = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
    sums = ShardSums(real.float().argmax(dim=1), local_window)
    with session(model, ids, layout, attention_mask=mask, block_size=block_size, key_block=key_block,
                 timeout=timeout or DEFAULT_TIMEOUT) as shard, torch.no_grad():
        shard.context.observe = sums
        trunk(model, shard.inputs)(**shard.inputs)
        layers = _reduce(sums, ids.shape[1], shard.context)
    stats = HeadStats(real=mask, local_window=local_window)
    stats.layers = layers
    stats.heads = {site: s.entropy.numel() for site, s in layers.items()}
    return stats


def head_stats(model, tokenizer, text, layout: str = "striped", max_tokens: int | None = None,
               truncate: bool = False, block_size: int = 512, key_block: int = 1024, timeout: float | None = None,
               **params):
    """`attnlab.head_stats` of `text` sharded over all ranks; call it on every rank.

    Returns on rank 0 the same DataFrame as the single-process `observe.heads.head_stats`
    (one row per (stack, layer, head)); None on the other ranks. Decoder-only and encoder
    models (no cross-attention). params: local_window, top_k, sink_threshold,
    sink_fraction, min_support (`observe.heads.DEFAULTS`).
    """
    import torch.distributed as dist

    from ..errors import OptionError
    from ..observe.heads import DEFAULTS, stats_frame
    from ..text import encode

    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise OptionError(f"head_stats: unknown parameter(s) {unknown}; valid: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if getattr(model.config, "is_encoder_decoder", False):
        raise OptionError("distributed head_stats serves decoder-only and encoder models, not encoder-decoders")
    enc = encode(model, tokenizer, text, max_tokens=max_tokens, truncate=truncate)
    stats = run_stats(model, enc, layout, block_size, key_block, p["local_window"], timeout)
    return stats_frame(stats, tokenizer, enc, p) if dist.get_rank() == 0 else None
