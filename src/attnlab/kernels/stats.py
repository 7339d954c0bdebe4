"""The statistics kernel: eager attention on the keys each query block can see.

`eager` computes every query block against all K keys, then masks: for a causal prefill
half of that work is for keys no query may see, and the observers get [B, H, q, K]
blocks that are half zeros. This kernel computes, per query block, only the key range
[lo, hi) the block may see (`stats.key_range`), masks inside it, and hands observers
that have `on_block` the trimmed probabilities and the logits:

    observer.on_block(call, q_start, probs [B, H, q, K'], k_start, scores [B, H, q, K'], rows)

rows: values the kernel has cheaply: "lse" = ln sum_j exp(s_ij) and "key_mean" = sum_j
p_ij j ([B, H, q] fp32; key_mean None for non-fp32 values on the torch path), and on the
native path also "dot" = sum_j p_ij s_ij [B, H, q] and "col" = sum_i p_ij [B, H, K'].

Native path (`attnlab.native`, a small C file compiled on first use): P = softmax(S) and
lse, dot, key_mean and col in one sweep per row (the row stays in the core's cache)
instead of torch's softmax and four more passes over the block; its exp is a vectorized
polynomial, so P differs from torch's softmax by ~1 ulp. Without a C compiler (or with
ATTNLAB_NATIVE=0) P comes from torch's softmax, as in eager, and the sums from torch
operations.

GQA is served without repeating keys: the G query heads of a key/value head are stacked
along the query axis of one matmul. Output equals `eager`'s up to float rounding (the
scaling is applied to the logits in place; the parity tests check outputs and
statistics). Calls it does not cover (modifiers, bias or position bias, sink logits, cross-attention,
decode/extend, observers without `on_block`) go to `kernels.eager` unchanged, whose
probabilities reach the observers through `on_probs`.
"""

from __future__ import annotations

import threading

import torch

from ..core import scores as sc
from ..core.call import AttnCall, KernelOutput
from ..core.hooks import Hooks
from ..core.scores import key_range, lse_from_top
from ..native import rowpass_library, softmax_rows


def covers(call: AttnCall, hooks: Hooks) -> bool:
    """Whether this kernel serves `call` itself (else it defers to eager)."""
    observers = hooks.observers
    return (not hooks.modifiers and call.positional and call.bias is None and call.position_bias is None
            and call.sinks is None and call.phase == "prefill" and not call.output_attentions
            and bool(observers) and all(callable(getattr(o, "on_block", None)) for o in observers)
            and not (call.dropout and call.module is not None and call.module.training))


_scratch = threading.local()


def scratch(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Two fp32 buffers of >= n elements for S and P, kept between calls (one pair per thread).

    A fresh 10-40 MB tensor per layer is mapped from the OS and faulted in page by page;
    reused, it is not (at 4096 tokens on SmolLM2 this was ~5 s of a 26 s pass). `release()`
    frees them.
    """
    held = getattr(_scratch, "pair", None)
    if held is None or held[0].numel() < n or held[0].device != torch.device(device):
        held = (torch.empty(n, dtype=torch.float32, device=device), torch.empty(n, dtype=torch.float32, device=device))
        _scratch.pair = held
    return held


def release() -> None:
    """Free this thread's S/P buffers (`scratch`)."""
    _scratch.pair = None


def _values_with_positions(call: AttnCall) -> torch.Tensor | None:
    """[V | key position | 0 ...] per key/value head, [B, H_kv, K, Dv'], for fp32 values (else None).

    One matmul of the probabilities with it gives the output and sum_j p_ij j (for
    mean_distance) together; Dv' = Dv + 1 rounded up to a multiple of 16, the width MKL's
    kernels run at full speed (65 columns took 1.5x as long as 64 or 80, measured).
    Lower-precision values keep eager's matmul (positions up to 8k are not exact in bf16).
    """
    if call.value.dtype != torch.float32:
        return None
    b, h_kv, k, dv = call.value.shape
    ext = torch.zeros(b, h_kv, k, -(-(dv + 1) // 16) * 16, dtype=torch.float32, device=call.value.device)
    ext[..., :dv] = call.value
    ext[..., dv] = torch.arange(k, dtype=torch.float32, device=call.value.device)
    return ext


def _lse(call: AttnCall, scores: torch.Tensor, probs: torch.Tensor, q0: int, lo: int) -> torch.Tensor:
    """ln sum_j exp(s_ij) per query, [B, H, q]: s_ij - ln p_ij holds for any key j with p_ij > 0.

    Taken at each query's own key (one gather; it is in the block's key range); where that
    probability is tiny (< 1e-30, logarithm no longer accurate) the block uses the top
    key instead: max_j s_ij - ln max_j p_ij (two passes over the block).
    """
    b, h, q, _ = probs.shape
    own = (torch.arange(q, device=probs.device) + q0 + call.q_offset - lo).view(1, 1, q, 1).expand(b, h, q, 1)
    p_own = probs.gather(-1, own).squeeze(-1)
    if bool((p_own < 1e-30).any()):
        return lse_from_top(scores, probs)
    return scores.gather(-1, own).squeeze(-1) - p_own.log()


def forward(call: AttnCall, hooks: Hooks, block_size: int | None = 256) -> KernelOutput:
    """Exact attention in query blocks of `block_size` (None = one block), each on its visible keys.

    Per block: logits S, P = softmax(S) with its row sums (native) or torch's softmax, one
    matmul P @ [V | j] (output and key-position mean), and lse (`_lse`). Observers get
    P, S and rows {"lse", "key_mean"} [B, H, q]. S and P live in two buffers reused by
    every block and call (`scratch`), so observers must not keep them. With the buffers
    reused, 256-query blocks measured fastest on SmolLM2 (one layer at 8192 tokens, 2
    threads: 1.82x SDPA's time vs 1.96x at 128 and 2.20x at 64): fewer, larger matrix
    products and fewer small per-block operations.
    """
    if block_size is not None and block_size < 1:
        raise ValueError(f"stats: block_size must be >= 1, got {block_size}")
    if not covers(call, hooks):
        from . import eager

        return eager.forward(call, hooks, block_size=block_size)
    b, h_kv, g = call.batch, call.num_kv_heads, call.groups
    dv = call.value.shape[-1]
    native = call.device.type == "cpu" and rowpass_library() is not None
    in_c = native and sc.causal_only(call)  # the C softmax masks the future keys itself
    ext = None if native else _values_with_positions(call)
    step = min(block_size or call.q_len, call.q_len)
    s_buf, p_buf = scratch(b * h_kv * g * step * call.k_len, call.query.device)
    output = torch.empty(b, call.q_len, h_kv * g, dv, dtype=call.value.dtype, device=call.value.device)
    for q0 in range(0, call.q_len, step):
        q1 = min(call.q_len, q0 + step)
        q = q1 - q0
        lo, hi = key_range(call, q0, q1)
        scores = sc.logits(call, q0, q1, lo, hi, out=s_buf, mask=not in_c)  # [B, H, q, K']
        probs = p_buf[:scores.numel()].view(scores.shape)
        flat = probs.view(b, h_kv, g * q, hi - lo)
        if native:  # softmax (and causal masking) and the statistics' row and column sums in one C sweep per row
            lse, dot, key_mean, col = softmax_rows(scores, probs, q0 + call.q_offset - lo if in_c else None)
            rows = {"lse": lse, "key_mean": key_mean + lo, "dot": dot, "col": col}
        else:
            torch.softmax(scores, dim=-1, out=probs)
            rows = {"lse": _lse(call, scores, probs, q0, lo), "key_mean": None}
        if ext is None:
            out = torch.matmul(flat.to(call.value.dtype), call.value[:, :, lo:hi])
        else:
            out = torch.matmul(flat, ext[:, :, lo:hi])  # [B, H_kv, G*q, Dv']
            rows["key_mean"] = out[..., dv].reshape(b, h_kv * g, q)
            out = out[..., :dv]
        output[:, q0:q1] = out.reshape(b, h_kv * g, q, dv).transpose(1, 2)
        for obs in hooks.observers:
            obs.on_block(call, q0, probs, lo, scores, rows)
    return KernelOutput(output=output)
