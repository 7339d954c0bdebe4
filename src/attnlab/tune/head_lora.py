"""`head_lora`: LoRA on q/k/v/o restricted to chosen heads' rows (q, k, v) or columns (o).

For a projection W (y = x W^T) and a head set S, the update is y[..., rows(S)] +=
(alpha / r) * x A^T B^T with A [r, in], B [|rows(S)|, r] (B = 0 at start); for o_proj it
reads only the chosen heads' input columns: y += (alpha / r) * x[..., cols(S)] A^T B^T.
GQA-aware: q rows and o columns are the chosen query heads'; k and v rows are the KV heads
those query heads read (head h reads KV head h // (H / H_kv)), so a k/v edit is shared by
the query heads of that group. It acts through torch forward hooks on the projection
modules, installed by attach() and removed on exit; no module is replaced.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import OptionError

PROJ = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj"}


def _attention_modules(model) -> dict:
    """{(stack, layer): attention module} of the decoder's self-attention modules."""
    from ..core.sites import attention_modules, split_name

    out = {}
    for name, module in attention_modules(model).values():
        if all(hasattr(module, p) for p in PROJ.values()):
            out[("decoder", split_name(name)[1])] = module
    return out


class HeadLoRA(nn.Module):
    """LoRA factors per (layer, projection) for the heads `heads` of `model` (see module doc)."""

    def __init__(self, model, heads, sites: dict, rank: int = 8, targets: str = "q,k,v,o", alpha: float = 16.0):
        super().__init__()
        self.heads, self.rank, self.targets, self.scaling = [tuple(h) for h in heads], rank, targets, alpha / rank
        mods = _attention_modules(model)
        bad = [t for t in targets.split(",") if t not in PROJ]
        if bad or not mods:
            raise OptionError(f"head_lora: needs q_proj/k_proj/v_proj/o_proj modules (Llama, Qwen, Gemma, ...) and "
                              f"targets among {','.join(PROJ)}; got {type(model).__name__}, targets {targets!r}")
        self.A, self.B, self._index = nn.ParameterDict(), nn.ParameterDict(), {}
        for (s, l) in sorted({(s, l) for s, l, _ in self.heads}):
            if (s, l) not in mods:
                raise OptionError(f"head_lora: no q/k/v/o projections for {s}:{l}")
            chosen = sorted(h for s2, l2, h in self.heads if (s2, l2) == (s, l))
            for t in targets.split(","):
                self._add(l, t, getattr(mods[(s, l)], PROJ[t]), chosen, sites[(s, l)])

    def _add(self, layer: int, t: str, proj: nn.Linear, chosen, site) -> None:
        H, Hkv, _ = site
        width = (proj.in_features if t == "o" else proj.out_features) // (H if t in "qo" else Hkv)
        units = chosen if t in "qo" else sorted({h // (H // Hkv) for h in chosen})
        idx = torch.cat([torch.arange(u * width, (u + 1) * width) for u in units])  # [n] rows or columns
        key = f"{layer}_{t}"
        self.register_buffer(f"idx_{key}", idx, persistent=False)
        n_in = len(idx) if t == "o" else proj.in_features
        n_out = proj.out_features if t == "o" else len(idx)
        self.A[key] = nn.Parameter(torch.randn(self.rank, n_in) / n_in ** 0.5)  # [r, in]
        self.B[key] = nn.Parameter(torch.zeros(n_out, self.rank))  # [out, r]
        self._index[key] = (layer, t)

    def delta(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """The low-rank update of projection `key` for input x [..., in]: [..., n rows] or [..., out]."""
        idx = getattr(self, f"idx_{key}")
        if self._index[key][1] == "o":
            x = x.index_select(-1, idx)
        A, B = self.A[key].to(x.dtype), self.B[key].to(x.dtype)
        return (x @ A.T) @ B.T * self.scaling

    def _hook(self, key: str):
        def hook(module, args, output):
            d = self.delta(key, args[0])
            if self._index[key][1] == "o":
                return output + d
            return output.index_add(-1, getattr(self, f"idx_{key}"), d)
        return hook

    def install(self, model) -> list:
        """Forward hooks on the projections (attach() removes them on exit)."""
        mods = _attention_modules(model)
        handles = []
        for key, (layer, t) in self._index.items():
            handles.append(getattr(mods[("decoder", layer)], PROJ[t]).register_forward_hook(self._hook(key)))
        return handles
