"""Linear attention with a feature map: a chunked causal form for prefill, a state for decode.

Definitions (fp32; phi = the feature maps of `attnlab.convert.maps`; p_i, p_j positions):

  causal      y_i = sum_{j: p_j <= p_i} a_ij v_j / sum_j a_ij,   a_ij = phi_q(q_i) . phi_k(k_j)
  non-causal  the same sum over every visible key (cross-attention: the encoder keys)
  with a softmax window w (the `hybrid` kernel, LoLCATs eq. 6): keys with p_i - p_j < w get
  a_ij = gamma_h * exp(s_ij - c_i) instead (s_ij the call's scaled logits, c_i their maximum
  over the window, gamma_h = sigmoid(mix_h) per head); keys further back keep phi . phi.

Chunked form (prefill; never an n x n tensor): per block of C queries starting at key index
P, the keys before P - w are folded into the state S = sum phi_k(k_j) v_j^T [B, H, F, Dv]
and z = sum phi_k(k_j) [B, H, F]; the C + w keys in between are a band with masks, so the
work is O(n (C + w) (F + Dv)). Recurrent form (decode on an attnlab `StateCache`): the cache
returns only the new keys (plus the window's last w - 1), and the state of everything older
is carried in the cache, so memory does not grow with the context. On a stock cache (all
keys returned) the same code recomputes the state each call: exact, but O(K) per step.

Masks: causality (or nothing) plus key padding, as transformers builds them; anything else
(float biases, position biases, softcaps, sink logits) cannot enter a linear form and is
refused. Sliding-window layers (Gemma3's local layers) stay exact softmax (`sliding="softmax"`)
or are refused (`sliding="refuse"`).
"""

from __future__ import annotations

import dataclasses

import torch

from ..core import scores as sc
from ..core.call import AttnCall, KernelOutput, refuse
from ..core.hooks import Hooks


def key_validity(call: AttnCall) -> torch.Tensor:
    """Which keys are real (not padding): float [B|1, 1|H, K, 1]; refuses any other mask.

    The mask must be the position rule (causal or none) intersected with one set of real
    keys per row; fully masked query rows (padding queries) are allowed."""
    if call.mask is None:
        return torch.ones(1, 1, call.k_len, 1, device=call.device)
    seen = call.mask.any(dim=2)  # [B, 1|H, K]
    rule = sc.visible(dataclasses.replace(call, mask=None))  # [1, 1, Q, K]
    expected = rule & seen[:, :, None, :]
    live = call.mask.any(dim=-1, keepdim=True)  # [B, 1|H, Q, 1] rows that see something
    if bool(((call.mask != expected) & live).any()):
        refuse(call, "linear", "a mask beyond causality and key padding", "'chunked'")
    return seen[..., None].float()


def check_call(call: AttnCall, name: str) -> None:
    """Refuse (RefusedCall) what a linear form cannot represent, before any computation."""
    if call.bias is not None or call.position_bias is not None:
        refuse(call, name, "additive biases or position biases", "'chunked'")
    if call.softcap is not None:
        refuse(call, name, "soft-capped logits", "'chunked'")
    if call.sinks is not None:
        refuse(call, name, "attention-sink logits", "'chunked'")
    if call.mask is not None and call.mask.shape[1] not in (1, call.num_heads):
        raise ValueError(f"{name}: mask head dimension {call.mask.shape[1]} is neither 1 nor {call.num_heads}")


def empty_state(b: int, h: int, f: int, dv: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """S [B, H, F, Dv] and z [B, H, F], zero."""
    return torch.zeros(b, h, f, dv, device=device), torch.zeros(b, h, f, device=device)


def fold(state, fk: torch.Tensor, v: torch.Tensor):
    """state + the keys fk [B, H, n, F] (padding rows zeroed) with values v [B, H, n, Dv]."""
    s, z = state
    return s + torch.matmul(fk.transpose(-1, -2), v), z + fk.sum(2)


def _band(call, fq, fk, v, q0, q1, lo, hi, window, gamma):
    """Numerator [B, H, q, Dv] and denominator [B, H, q] of queries [q0, q1) on keys [lo, hi)."""
    vis = call.visible(q0, q1, lo, hi)  # [B|1, 1|H, q, k]
    if call.causal:
        rel = call.q_positions(q0, q1)[:, None] - call.k_positions(lo, hi)[None, :]  # [q, k]
        lin = vis & (rel >= window)
    else:
        lin = vis
    a = torch.matmul(fq, fk[:, :, lo:hi].transpose(-1, -2)) * lin  # [B, H, q, k]
    if window:
        s = sc.logits(call, q0, q1, lo, hi).masked_fill(~(vis & (rel < window)), -torch.inf)
        c = s.amax(-1, keepdim=True)
        c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
        a = a + gamma * torch.exp(s - c)
    return torch.matmul(a, v[:, :, lo:hi]), a.sum(-1)


def attend(call: AttnCall, fq, fk, v, window: int = 0, gamma=None, state=None, chunk: int = 64):
    """Chunked (causal) or one-shot (non-causal) linear / hybrid attention: [B, H, Q, Dv] fp32.

    fq [B, H, Q, F]; fk [B, H, K, F] with padding keys zeroed; v [B, H, K, Dv] fp32;
    state: (S, z) of keys before key 0 (all further back than `window` from every query)."""
    b, h, q_len, k_len = fq.shape[0], fq.shape[1], fq.shape[2], fk.shape[2]
    s, z = state if state is not None else empty_state(b, h, fk.shape[-1], v.shape[-1], fq.device)
    if not call.causal:
        s, z = fold((s, z), fk, v)
        num, den = torch.matmul(fq, s), torch.matmul(fq, z[..., None])[..., 0]
        return num / torch.where(den > 0, den, torch.ones_like(den))[..., None]
    o, upto, outs = call.q_offset, 0, []
    for q0 in range(0, q_len, chunk):
        q1 = min(q_len, q0 + chunk)
        lo, hi = min(max(0, o + q0 - window), k_len), min(k_len, o + q1)
        if lo > upto:
            s, z = fold((s, z), fk[:, :, upto:lo], v[:, :, upto:lo])
            upto = lo
        fq_c = fq[:, :, q0:q1]
        num, den = torch.matmul(fq_c, s), torch.matmul(fq_c, z[..., None])[..., 0]
        if hi > lo:
            bn, bd = _band(call, fq_c, fk, v, q0, q1, lo, hi, window, gamma)
            num, den = num + bn, den + bd
        outs.append(num / torch.where(den > 0, den, torch.ones_like(den))[..., None])
    return torch.cat(outs, dim=2)


def reference(call: AttnCall, fq, fk, v, window: int = 0, gamma=None, state=None) -> torch.Tensor:
    """The slow exact form of `attend`: the whole [B, H, Q, K] weight matrix, [B, H, Q, Dv]."""
    vis = call.visible()
    rel = call.q_positions()[:, None] - call.k_positions()[None, :] if call.positional else None
    lin = vis & (rel >= window) if call.causal else vis
    a = torch.einsum("bhqf,bhkf->bhqk", fq, fk) * lin
    if window and call.causal:
        s = sc.logits(call).masked_fill(~(vis & (rel < window)), -torch.inf)
        c = s.amax(-1, keepdim=True)
        a = a + gamma * torch.exp(s - torch.where(torch.isfinite(c), c, torch.zeros_like(c)))
    num, den = torch.einsum("bhqk,bhkd->bhqd", a, v), a.sum(-1)
    if state is not None:
        num, den = num + torch.einsum("bhqf,bhfd->bhqd", fq, state[0]), den + torch.einsum("bhqf,bhf->bhq", fq, state[1])
    return num / torch.where(den > 0, den, torch.ones_like(den))[..., None]


def recurrent(fq, fk, v) -> torch.Tensor:
    """The recurrent form of causal linear attention, one token at a time (no padding; Q = K):
    S_t = S_{t-1} + phi_k(k_t) v_t^T, y_t = phi_q(q_t) S_t / phi_q(q_t) z_t. [B, H, T, Dv]."""
    s, z = empty_state(fq.shape[0], fq.shape[1], fk.shape[-1], v.shape[-1], fq.device)
    outs = []
    for t in range(fq.shape[2]):
        s, z = fold((s, z), fk[:, :, t:t + 1], v[:, :, t:t + 1])
        num, den = torch.matmul(fq[:, :, t:t + 1], s), torch.matmul(fq[:, :, t:t + 1], z[..., None])[..., 0]
        outs.append(num / torch.where(den > 0, den, torch.ones_like(den))[..., None])
    return torch.cat(outs, dim=2)


def forward(call: AttnCall, hooks: Hooks, feature_map: str | None = None, maps: object = None, chunk: int = 64,
            features: int | None = None, seed: int = 0, sliding: str = "softmax", teacher: bool = False,
            exact: bool = False) -> KernelOutput:
    """Linear attention with `feature_map` (elu, relu, performer, hedgehog); output [B, Q, H, Dv].

    maps: an `attnlab.convert.Maps` (or a directory saved by `attnlab.convert.save`) with
    each layer's (learned) maps; without it elu / relu / performer run untrained.
    chunk: queries per block of the chunked form; features: performer's m (default D).
    teacher: return exact softmax attention and record the linear output's MSE to it in
    `maps.losses` (attention transfer). exact: use the n x n `reference` (tests)."""
    from ..convert.engine import run

    return run(call, hooks, "linear", feature_map, maps, chunk, features, seed, sliding, teacher, exact, window=0)
