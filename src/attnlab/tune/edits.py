"""`HeadEdit`: trainable per-head edits of attention outputs, the module behind lofit and gates.

For each chosen head h (a (stack, layer, head) triple) with output z_h [B, Q, Dv]:

    z_h <- (1 + g_m,h * a_h) * z_h + g_a,h * v_h

a_h: a scalar scaling (lofit) or a [Dv] vector (gates, `vector_scale=True`); v_h [Dv] an
offset; g the Hard-Concrete gates of `gates.py` (1 when the edit has no gates). Every other
head passes through unchanged. It acts through attnlab's output hook (`output(call, out)`),
so it runs under any kernel, with gradients, and the model itself is never changed.
"""

from __future__ import annotations

import torch
from torch import nn


class HeadEdit(nn.Module):
    """Per-head scalings and/or offsets on the heads `heads` of a model with sites `sites`.

    heads: list of (stack, layer, head); sites: {(stack, layer): (H, H_kv, Dv)}.
    scale: learn a_h; offset: learn v_h; vector_scale: a_h is [Dv] instead of a scalar.
    gates: a `gates.HardConcrete` over 2 gates per head (multiplicative, additive) or None.
    """

    def __init__(self, heads, sites: dict, scale: bool, offset: bool, vector_scale: bool = False, gates=None):
        super().__init__()
        self.heads = [tuple(h) for h in heads]
        self.sites = {k: tuple(v) for k, v in sites.items()}
        n = len(self.heads)
        dv = {self.sites[(s, l)][2] for s, l, _ in self.heads}
        if len(dv) > 1:
            raise ValueError(f"HeadEdit: chosen heads have different value dims {sorted(dv)}")
        self.dv = dv.pop() if dv else 1
        self.scale = nn.Parameter(torch.zeros(n, self.dv if vector_scale else 1)) if scale else None  # [n, Dv|1]
        self.offset = nn.Parameter(torch.zeros(n, self.dv)) if offset else None  # [n, Dv]
        self.gates = gates
        self._rows = {}  # (stack, layer) -> (rows into heads [m], head indices [m])
        for i, (s, l, h) in enumerate(self.heads):
            self._rows.setdefault((s, l), ([], []))
            self._rows[(s, l)][0].append(i)
            self._rows[(s, l)][1].append(h)

    def gate_values(self) -> torch.Tensor | None:
        """[n, 2] gates (multiplicative, additive) of the current pass, or None."""
        return None if self.gates is None else self.gates()

    def output(self, call, out: torch.Tensor) -> torch.Tensor:  # out [B, Q, H, Dv]
        rows = self._rows.get((call.site.name, call.layer))
        if rows is None:
            return out
        idx = torch.tensor(rows[0], device=out.device)
        heads = torch.tensor(rows[1], device=out.device)
        H, dv = out.shape[2], out.shape[3]
        wd = torch.float64 if out.dtype == torch.float64 else torch.float32  # edits in fp32 (fp64 for gradcheck)
        mult = torch.ones(H, dv, device=out.device, dtype=wd)  # [H, Dv]
        add = torch.zeros(H, dv, device=out.device, dtype=wd)  # [H, Dv]
        g = self.gate_values()  # [n, 2]: each head's layer runs once per forward, so one sample per pass
        if self.scale is not None:
            a = self.scale[idx].expand(-1, dv)  # [m, Dv]
            mult = mult.index_put((heads,), (1 + (a if g is None else g[idx, :1] * a)).to(wd))
        if self.offset is not None:
            v = self.offset[idx]  # [m, Dv]
            add = add.index_put((heads,), v if g is None else g[idx, 1:] * v)
        return out * mult.to(out.dtype) + add.to(out.dtype)

    def describe(self) -> str:
        return f"head edit on {len(self.heads)} heads"
