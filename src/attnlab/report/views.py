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
    """Observer: the top-k keys of every query for the chosen heads, batch row 0.

    heads: (layer, head) pairs (a single-stack model) or (stack, layer, head) triples, stack
    a site name ("encoder", "decoder", "decoder.cross"). A pair on a model with several
    stacks is an error: it would not say which head is meant.
    """

    def __init__(self, heads: list[tuple], k: int):
        self.k = k
        self.keys = [(None, *h) if len(h) == 2 else tuple(h) for h in heads]  # (stack or None, layer, head)
        self.want: dict[tuple, list[int]] = {}
        for stack, layer, head in self.keys:
            self.want.setdefault((stack, layer), []).append(head)
        self.parts: dict[tuple, list] = {h: [] for h in self.keys}
        self.names: dict[tuple, str] = {}  # key -> the site name it was found at
        self.stacks: dict[str, bool] = {}  # site name -> causal
        self.causal = True

    def on_call(self, call) -> None:
        self.causal = self.causal and call.causal
        name = call.site.name
        self.stacks[name] = self.stacks.get(name, True) and call.causal
        short = [k for k in self.keys if k[0] is None]
        if short and len(self.stacks) > 1:
            raise ValueError(f"this model has several attention stacks ({', '.join(self.stacks)}); name the "
                             f"stack of every map head, e.g. {next(iter(self.stacks))}:{short[0][1]}.{short[0][2]}")

    def on_probs(self, call, q_start: int, probs: torch.Tensor) -> None:
        if call.phase != "prefill":
            return
        for stack in (None, call.site.name):
            heads = self.want.get((stack, call.layer))
            if not heads:
                continue
            sel = probs[0, heads].float()  # [h, q, K]
            val, idx = sel.topk(min(self.k, sel.shape[-1]), dim=-1)  # [h, q, k]
            for n, head in enumerate(heads):
                self.parts[(stack, call.layer, head)].append((idx[n].numpy(), val[n].numpy()))
                self.names[(stack, call.layer, head)] = call.site.name

    def result(self) -> list[dict]:
        """[{"stack", "layer", "head", "idx": base64 uint16 [T, k], "val": base64 float16 [T, k]}]."""
        out = []
        for key, parts in self.parts.items():
            stack, layer, head = key
            if not parts:
                where = f"{stack}:" if stack else ""
                raise ValueError(f"no attention reached {where}layer {layer} head {head}; stacks: "
                                 f"{', '.join(self.stacks)}; valid layers: {sorted({l for _, l in self.want})}")
            idx = np.concatenate([p[0] for p in parts])  # [T, k]
            val = np.concatenate([p[1] for p in parts])  # [T, k]
            out.append({"stack": self.names[key], "layer": layer, "head": head,
                        "idx": pack(idx, "uint16"), "val": pack(val, "float16")})
        return out


class Rollout:
    """Observer: attention rollout (Abnar & Zuidema 2020) of batch row 0, streamed over layers.

    Per layer, A = mean over query heads of the probabilities (GQA heads each have their
    own map, so the mean runs over query heads), and R <- (0.5 I + 0.5 A) R in the order
    the layers run. R[t, j] is the relevance of input token j for target position t.
    Only one stack's self-attention is rolled out (`stack`, default the first stack that
    runs: an encoder-decoder's encoder, over the input text); cross-attention and a second
    stack would mix maps whose rows and columns are different tokens.
    """

    def __init__(self, stack: str | None = None):
        self.matrix: torch.Tensor | None = None  # R [T, T] fp32
        self.layer_map: torch.Tensor | None = None  # A of the current layer [T, T]
        self.layers = 0
        self.stack = stack

    def _mine(self, call) -> bool:
        if call.phase != "prefill" or call.cross:
            return False
        if self.stack is None:
            self.stack = call.site.name
        return call.site.name == self.stack

    def on_probs(self, call, q_start: int, probs: torch.Tensor) -> None:
        if not self._mine(call):
            return
        if self.layer_map is None:
            self.layer_map = torch.zeros(call.q_len, call.k_len)
        block = probs[0].float().mean(dim=0)  # [q, K]
        self.layer_map[q_start:q_start + block.shape[0]] = block

    def on_output(self, call, output: torch.Tensor) -> None:
        if not self._mine(call) or self.layer_map is None:
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


def token_views(model, input_ids: torch.Tensor, heads: list[tuple], k: int = 16,
                window: int = 1024, block_size: int = 256, rollout_k: int = 32, rollout: bool = True) -> dict:
    """Top-k maps of `heads` and (optionally) rollout for the first `window` tokens of input_ids [1, T].

    heads: (layer, head) pairs, or (stack, layer, head) triples on a model with several
    stacks. An encoder-decoder's decoder reads the same tokens shifted right
    (`text.teacher_forced`); a cross-attention map's rows are decoder positions, its keys
    encoder positions. Returns {"window", "n_tokens", "k", "causal", "heads": [...],
    "stacks": {site name: {"causal", "queries", "keys"}} ("queries" / "keys": whose tokens,
    "input" or "decoder"), "rollout": {...} | None} with the arrays packed by `pack`
    (row-major [window, k]).
    """
    from ..core.session import attach
    from ..models import trunk
    from ..text import teacher_forced

    if not 1 <= window <= 65535:
        raise ValueError(f"window must be in 1..65535 tokens, got {window}")
    n_tokens = int(input_ids.shape[1])
    ids = input_ids[:, :window]
    maps = HeadMaps(list(heads), k)
    roll = Rollout() if rollout else None
    observers = [maps] + ([roll] if roll else [])
    inputs = teacher_forced(model, {"input_ids": ids})
    with attach(model, kernel="eager", observe=observers, block_size=block_size), torch.no_grad():
        trunk(model, inputs)(**inputs)  # no LM head: its logits are not needed
    seq2seq = "decoder_input_ids" in inputs
    stacks = {name: {"causal": causal, "queries": "decoder" if seq2seq and name.startswith("decoder") else "input",
                     "keys": "decoder" if seq2seq and name == "decoder" else "input"}
              for name, causal in maps.stacks.items()}
    views = {"window": int(ids.shape[1]), "n_tokens": n_tokens, "k": k, "causal": maps.causal,
             "heads": maps.result() if heads else [], "stacks": stacks, "rollout": None}
    if roll is not None and roll.matrix is not None:
        views["rollout"] = dict(sparse_rows(roll.matrix.numpy(), rollout_k), source="attnlab.report.views.Rollout",
                                layers=roll.layers, stack=roll.stack)
    return views
