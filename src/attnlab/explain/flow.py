"""Attention flow (Abnar & Zuidema): input relevance as max-flow through the layered graph.

The graph has a node (l, j) per layer boundary l = 0..L and token j; an edge (l-1, j) ->
(l, i) has capacity A_hat_l[i, j] = residual * [i == j] + (1 - residual) * mean_h A_l,h[i, j].
The flow of input token j for target t is the max-flow value from (0, j) to (L, t).
Several targets: a super-sink fed by each target node with capacity 1.

Exact flow has O(L T^2) edges and one max-flow per input token, out of reach at 4096
tokens. The tractable version here (our choice; exact when top_m=None):
  * only nodes that can reach the target are built, backwards from the target, layer by
    layer, recomputing only those nodes' attention rows from the captured queries/keys;
  * each node keeps its `top_m` strongest incoming edges (the residual self-edge, weight
    >= residual, is always among them). Dropping edges can only lower flows, so the
    result is a lower bound of the exact flow on the same graph;
  * max-flow is solved per input token (scipy's Dinic on integer capacities scaled by
    ~1e9 / targets, i.e. ~1e-9 resolution) for the `max_sources` input tokens with the
    largest rollout over the pruned graph; the others are reported as 0;
  * for passages (`group_flow_from_calls`) one max-flow per passage, from a super-source
    feeding all of the passage's tokens: how much of the target's capacity the passage
    as a whole can supply. This is what context traceback with method "flow" uses.
"""

from __future__ import annotations

from .capture import Progress, blocks, capture, encode_ids, head_mean_rows, targets_of


def _layer_edges(call, frontier, residual: float, top_m: int | None, block_size: int):
    """Kept incoming edges of the frontier nodes (positions [f]): (dst_pos, src_pos, capacity)."""
    import torch

    dst, src, cap = [], [], []
    for idx in blocks(frontier, block_size):
        a_hat = (1.0 - residual) * head_mean_rows(call, idx)  # [q, T]
        a_hat[torch.arange(len(idx)), idx] += residual
        if top_m is not None and top_m < a_hat.shape[1]:
            val, col = torch.topk(a_hat, top_m, dim=1)  # [q, m]
        else:
            col = torch.arange(a_hat.shape[1]).expand_as(a_hat)
            val = a_hat
        keep = val > 0
        dst.append(idx[:, None].expand_as(col)[keep])
        src.append(col[keep])
        cap.append(val[keep])
    return torch.cat(dst), torch.cat(src), torch.cat(cap)


def build_graph(calls, targets, residual: float = 0.5, top_m: int | None = 8, block_size: int = 256,
                progress: Progress | None = None):
    """The pruned layered graph, built backwards from the targets.

    Returns (edges, inputs): edges is a list over layers l = 1..L of (dst_pos, src_pos,
    capacity) tensors for edges (l-1, src) -> (l, dst); inputs the reached input positions.
    """
    import torch

    with torch.no_grad():
        frontier, edges = targets, []
        for done, call in enumerate(reversed(calls)):
            dst, src, cap = _layer_edges(call, frontier, residual, top_m, block_size)
            edges.append((dst, src, cap))
            frontier = torch.unique(src)
            if progress is not None:
                progress("flow graph", done + 1, len(calls))
    return edges[::-1], frontier


def _pruned_rollout(edges, targets, n: int):
    """Rollout on the pruned graph (orders the sources): [T]."""
    import torch

    v = torch.zeros(n, dtype=torch.float64)
    v[targets] = 1.0
    for dst, src, cap in reversed(edges):
        nxt = torch.zeros(n, dtype=torch.float64)
        nxt.index_add_(0, src, v[dst] * cap.double())
        v = nxt
    return v


def _csr(edges, targets, n: int, scale: float, sources=None):
    """Integer-capacity sparse graph; node (l, j) -> l * n + j, then the super-sink, then
    (if `sources` [s] is given) a super-source feeding those input positions."""
    import numpy as np
    from scipy.sparse import csr_matrix

    rows, cols, data = [], [], []
    for l, (dst, src, cap) in enumerate(edges, start=1):
        rows.append((l - 1) * n + src.numpy())
        cols.append(l * n + dst.numpy())
        data.append(np.floor(cap.double().numpy() * scale))
    sink = (len(edges) + 1) * n
    rows.append(len(edges) * n + targets.numpy())
    cols.append(np.full(len(targets), sink))
    data.append(np.full(len(targets), np.floor(scale)))
    if sources is not None:
        rows.append(np.full(len(sources), sink + 1))
        cols.append(sources.numpy())
        data.append(np.full(len(sources), np.floor(scale)))
    size = sink + 2
    graph = csr_matrix((np.concatenate(data).astype(np.int32),
                        (np.concatenate(rows), np.concatenate(cols))), shape=(size, size))
    return graph, sink


def group_flow_from_calls(calls, targets, spans, residual: float = 0.5, top_m: int | None = 8,
                          block_size: int = 256, progress: Progress | None = None):
    """Max-flow from each span's input tokens (jointly, via a super-source) to the targets.

    spans: list of (start, end) token ranges (e.g. passages). Returns a list of floats, one
    per span, in units of target rows (each in [0, len(targets)]). One max-flow per span.
    """
    import torch
    from scipy.sparse.csgraph import maximum_flow

    n = calls[0].k_len
    edges, inputs = build_graph(calls, targets, residual, top_m, block_size, progress)
    scale = 1e9 / len(targets)
    out = []
    for start, end in spans:
        members = inputs[(inputs >= start) & (inputs < end)]
        if len(members) == 0:
            out.append(0.0)
            continue
        graph, sink = _csr(edges, targets, n, scale, sources=members)
        out.append(maximum_flow(graph, sink + 1, sink, method="dinic").flow_value / scale)
    return out


def flow_from_calls(calls, targets, residual: float = 0.5, top_m: int | None = 8,
                    max_sources: int | None = 256, block_size: int = 256, progress: Progress | None = None):
    """Attention-flow relevance [T] (torch fp32) of the target positions from captured calls."""
    import torch
    from scipy.sparse.csgraph import maximum_flow

    n = calls[0].k_len
    edges, inputs = build_graph(calls, targets, residual, top_m, block_size, progress)
    order = _pruned_rollout(edges, targets, n)[inputs].argsort(descending=True)
    sources = inputs[order][:max_sources] if max_sources is not None else inputs
    scale = 1e9 / len(targets)
    graph, sink = _csr(edges, targets, n, scale)
    out = torch.zeros(n, dtype=torch.float32)
    for done, j in enumerate(sources.tolist()):
        out[j] = maximum_flow(graph, j, sink, method="dinic").flow_value / scale
        if progress is not None and (done + 1) % 16 == 0:
            progress("max-flow", done + 1, len(sources))
    return out


def flow(model, tokenizer, text: str, target=-1, residual: float = 0.5, top_m: int | None = 8,
         max_sources: int | None = 256, block_size: int = 256, max_tokens: int | None = None,
         progress: Progress | None = None):
    """Input-token relevance for `target` by (pruned) attention flow: numpy array [T].

    Each entry is a max-flow value in [0, 1] per target (see module doc for top_m and
    max_sources; top_m=None, max_sources=None is the paper's exact flow).
    """
    ids = encode_ids(model, tokenizer, text, max_tokens)  # [1, T]
    calls = capture(model, ids)
    rel = flow_from_calls(calls, targets_of(target, ids.shape[1]), residual, top_m, max_sources,
                          block_size, progress)
    return rel.numpy()
