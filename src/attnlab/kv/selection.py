"""Selection without eviction: each decode query attends to a chosen subset of the cache.

Nothing is evicted (a later query may choose other tokens); the decode call runs exact
attention on the gathered keys (`attend`). Each rule returns slot indices long
[B, H_kv, S] per key head, or None for full attention this step:

    quest       pages of `page` keys with per-channel min / max keys; the upper bound of a
                query's score on a page is sum_d max(q_d * max_d, q_d * min_d), the max over
                the key head's query heads; the top tokens // page pages plus the unfinished
                last page (Quest, Tang et al. 2024)
    tokenselect per-head softmax of q . k, summed over all heads of the layer (soft voting):
                one top-`tokens` set per layer; reused while the cosine similarity of the
                query to the query that chose it stays >= `threshold` (TokenSelect)
    recycled    full attention every `every` steps; in between the top-`tokens` keys of the
                last full step (group-mean attention) plus the tokens added since (Recycled Attention)
"""

from __future__ import annotations

import dataclasses

import torch

from ..core import scores as sc
from ..core.call import AttnCall, KernelOutput


def _tail(idx: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """idx [B, H_kv, S] with the slots [start, end) appended to every head."""
    b, h = idx.shape[:2]
    extra = torch.arange(start, end, device=idx.device).expand(b, h, end - start)
    return torch.cat([idx, extra], -1)


def quest(call: AttnCall, layer, st: dict, page: int = 16, tokens: int = 512):
    """Quest's top pages by min/max upper bound (see the module docstring)."""
    k = call.k_len
    full = (k - 1) // page  # complete pages before the newest token's page
    top = max(1, tokens // page)
    if full <= top:
        return None
    done = st.get("pages", 0)
    if done == 0 or done > full:
        done, st["min"], st["max"] = 0, None, None
    if done < full:
        blk = call.key[:, :, done * page:full * page].float()  # [B, H_kv, n*page, D]
        blk = blk.view(*blk.shape[:2], full - done, page, -1)
        mins, maxs = blk.amin(3), blk.amax(3)  # [B, H_kv, n, D]
        st["min"] = mins if st["min"] is None else torch.cat([st["min"], mins], 2)
        st["max"] = maxs if st["max"] is None else torch.cat([st["max"], maxs], 2)
        st["pages"] = full
    q = call.query[:, :, -1].float().view(call.batch, call.num_kv_heads, call.groups, 1, -1)  # [B, H_kv, G, 1, D]
    bound = torch.maximum(q * st["max"][:, :, None], q * st["min"][:, :, None]).sum(-1).amax(2)  # [B, H_kv, P]
    pages = bound.topk(top, dim=-1).indices.sort(-1).values  # [B, H_kv, top]
    idx = (pages[..., None] * page + torch.arange(page, device=call.device)).flatten(2)
    return _tail(idx, full * page, k)


def tokenselect(call: AttnCall, layer, st: dict, tokens: int = 512, threshold: float = 0.9):
    """TokenSelect's voted top tokens, reused while queries stay similar (module docstring)."""
    k = call.k_len
    if k <= tokens:
        return None
    q = call.query[:, :, -1].float().flatten(1)  # [B, H*D]
    prev = st.get("q")
    if prev is not None and st.get("len", k + 1) < k and \
            bool((torch.nn.functional.cosine_similarity(q, prev, dim=-1) >= threshold).all()):
        return _tail(st["idx"], st["len"], k)
    p = torch.softmax(sc.logits(call, call.q_len - 1, call.q_len)[:, :, 0], dim=-1)  # [B, H, K]
    vote = p.sum(1)  # [B, K]
    chosen = vote[:, :k - 1].topk(tokens - 1, dim=-1).indices.sort(-1).values  # [B, S]
    idx = chosen[:, None, :].expand(call.batch, call.num_kv_heads, -1)
    st.update(q=q, idx=idx, len=k)
    return _tail(idx, k - 1, k)


def recycled(call: AttnCall, layer, st: dict, every: int = 8, tokens: int = 512):
    """Recycled attention: full steps every `every` decode steps, their top keys in between."""
    k = call.k_len
    step = st.get("step", 0)
    st["step"] = step + 1
    if k <= tokens:
        return None
    if step % every == 0 or "idx" not in st or st.get("len", k + 1) >= k:
        p = sc.probs(call, sc.logits(call, call.q_len - 1, call.q_len))[:, :, 0]  # [B, H, K]
        p = p.view(call.batch, call.num_kv_heads, call.groups, k).mean(2)
        st.update(idx=p.topk(tokens, dim=-1).indices.sort(-1).values, len=k)
        return None
    return _tail(st["idx"], st["len"], k)


SELECTIONS = {"quest": quest, "tokenselect": tokenselect, "recycled": recycled}


def attend(call: AttnCall, idx: torch.Tensor, session) -> KernelOutput:
    """Exact attention of the call's queries on the slots idx [B, H_kv, S] only."""
    from ..kernels import eager, sdpa

    d, dv = call.key.shape[-1], call.value.shape[-1]
    key = torch.gather(call.key, 2, idx[..., None].expand(*idx.shape, d))  # [B, H_kv, S, D]
    value = torch.gather(call.value, 2, idx[..., None].expand(*idx.shape, dv))  # [B, H_kv, S, Dv]
    mask = None
    if call.mask is not None:
        m = call.mask[:, :, -1]  # [B|1, H|1, K]
        m = m.expand(call.batch, call.num_heads, call.k_len)[:, ::call.groups] if m.shape[1] > 1 else m.expand(
            call.batch, call.num_kv_heads, call.k_len)
        mask = torch.gather(m, 2, idx).repeat_interleave(call.groups, 1)[:, :, None, :]  # [B, H, 1, S]
    sub = dataclasses.replace(call, key=key, value=value, mask=mask, causal=False, k_start=None,
                              sliding_window=None)
    kernel = eager if session.kernel_name == "eager" else sdpa
    out = kernel.forward(sub, session.hooks)
    return KernelOutput(output=out.output, weights=None, density=idx.shape[-1] / call.k_len)


def serve(state, layer, call: AttnCall, session):
    """A KernelOutput when the policy's selection rule serves this decode call, else None."""
    st = state.selection_state.setdefault(call.layer, {})
    evicted = layer.seen - call.k_len  # changes when the decode budget re-packs the slots
    if st.get("evicted", evicted) != evicted:
        st.clear()
    st["evicted"] = evicted
    rule = state.policy.selection
    idx = SELECTIONS[rule](call, layer, st, **state.policy.selection_params)
    return None if idx is None else attend(call, idx, session)
