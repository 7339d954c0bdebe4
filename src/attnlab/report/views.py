"""The data behind the report's token view and rollout view, from one eager forward.

The token view never holds all heads' n x n maps: an observer keeps, for a bounded set of
chosen (layer, head)s only, the k most-attended keys of every query (positions as uint16,
probabilities as float16). The forward runs on the first `window` tokens of the input; for
a causal model those queries see only those keys, so the view is exact for them.
"""

from __future__ import annotations

import base64

import numpy as np
import torch


def pack(array: np.ndarray, dtype: str) -> str:
    """Little-endian bytes of `array` cast to dtype ('uint16' | 'float16'), base64 text."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


class HeadMaps:
    """Observer: the top-k keys of every query for the chosen (layer, head)s, batch row 0."""

    def __init__(self, heads: list[tuple[int, int]], k: int):
        self.k = k
        self.want: dict[int, list[int]] = {}
        for layer, head in heads:
            self.want.setdefault(layer, []).append(head)
        self.parts: dict[tuple[int, int], list] = {h: [] for h in heads}
        self.causal = True

    def on_call(self, call) -> None:
        self.causal = self.causal and call.causal

    def on_probs(self, call, q_start: int, probs: torch.Tensor) -> None:
        heads = self.want.get(call.layer)
        if not heads or call.phase != "prefill":
            return
        sel = probs[0, heads].float()  # [h, q, K]
        val, idx = sel.topk(min(self.k, sel.shape[-1]), dim=-1)  # [h, q, k]
        for n, head in enumerate(heads):
            self.parts[(call.layer, head)].append((idx[n].numpy(), val[n].numpy()))

    def result(self) -> list[dict]:
        """[{"layer", "head", "idx": base64 uint16 [T, k], "val": base64 float16 [T, k]}]."""
        out = []
        for (layer, head), parts in self.parts.items():
            if not parts:
                raise ValueError(f"no attention reached layer {layer} head {head}; valid layers: {sorted(self.want)}")
            idx = np.concatenate([p[0] for p in parts])  # [T, k]
            val = np.concatenate([p[1] for p in parts])  # [T, k]
            out.append({"layer": layer, "head": head, "idx": pack(idx, "uint16"), "val": pack(val, "float16")})
        return out


class Rollout:
    """Observer: attention rollout (Abnar & Zuidema 2020) of batch row 0, streamed over layers.

    Per layer, A = mean over query heads of the probabilities (GQA heads each have their
    own map, so the mean runs over query heads), and R <- (0.5 I + 0.5 A) R in the order
    the layers run. R[t, j] is the relevance of input token j for target position t.
    """

    def __init__(self):
        self.matrix: torch.Tensor | None = None  # R [T, T] fp32
        self.layer_map: torch.Tensor | None = None  # A of the current layer [T, T]
        self.layers = 0

    def on_probs(self, call, q_start: int, probs: torch.Tensor) -> None:
        if call.phase != "prefill":
            return
        if self.layer_map is None:
            self.layer_map = torch.zeros(call.q_len, call.k_len)
        block = probs[0].float().mean(dim=0)  # [q, K]
        self.layer_map[q_start:q_start + block.shape[0]] = block

    def on_output(self, call, output: torch.Tensor) -> None:
        if call.phase != "prefill" or self.layer_map is None:
            return
        n = self.layer_map.shape[0]
        eye = torch.eye(n)
        step = 0.5 * eye + 0.5 * self.layer_map  # [T, T], rows sum to 1
        self.matrix = step if self.matrix is None else step @ self.matrix
        self.layer_map = None
        self.layers += 1


def sparse_rows(matrix: np.ndarray, k: int) -> dict:
    """Top-k columns of every row of `matrix` [T, T]: {"k", "idx" uint16, "val" float16} base64."""
    k = min(k, matrix.shape[1])
    idx = np.argsort(-matrix, axis=1, kind="stable")[:, :k]  # [T, k]
    val = np.take_along_axis(matrix, idx, axis=1)  # [T, k]
    return {"k": k, "idx": pack(idx, "uint16"), "val": pack(val, "float16")}


def token_views(model, input_ids: torch.Tensor, heads: list[tuple[int, int]], k: int = 16,
                window: int = 1024, block_size: int = 256, rollout_k: int = 32, rollout: bool = True) -> dict:
    """Top-k maps of `heads` and (optionally) rollout for the first `window` tokens of input_ids [1, T].

    Returns {"window", "n_tokens", "k", "causal", "heads": [...], "rollout": {...} | None}
    with the arrays packed by `pack` (row-major [window, k]).
    """
    from ..core.session import attach

    if not 1 <= window <= 65535:
        raise ValueError(f"window must be in 1..65535 tokens, got {window}")
    n_tokens = int(input_ids.shape[1])
    ids = input_ids[:, :window]
    maps = HeadMaps(list(heads), k)
    roll = Rollout() if rollout else None
    observers = [maps] + ([roll] if roll else [])
    base = getattr(model, "base_model", None) or model  # no LM head: its logits are not needed
    with attach(model, kernel="eager", observe=observers, block_size=block_size), torch.no_grad():
        base(input_ids=ids)
    views = {"window": int(ids.shape[1]), "n_tokens": n_tokens, "k": k, "causal": maps.causal,
             "heads": maps.result() if heads else [], "rollout": None}
    if roll is not None and roll.matrix is not None:
        views["rollout"] = dict(sparse_rows(roll.matrix.numpy(), rollout_k), source="attnlab.report.views.Rollout",
                                layers=roll.layers)
    return views
