"""LoLCATs hybrid attention: softmax on the last `window` keys + linear attention before them.

For a query at position p_i (LoLCATs, Zhang et al. 2025, eq. 6, as their
`hybrid_attention_quadratic`):

    y_i = [ sum_{p_i - p_j <  w} gamma_h exp(s_ij - c_i) v_j + sum_{p_i - p_j >= w} phi_q(q_i).phi_k(k_j) v_j ]
        / [ sum_{p_i - p_j <  w} gamma_h exp(s_ij - c_i)     + sum_{p_i - p_j >= w} phi_q(q_i).phi_k(k_j)     ]

s_ij the call's scaled logits, c_i their maximum over the window, gamma_h = sigmoid(mix_h) a
learned factor per head (initially 0.1, LoLCATs' default). Computed by the same chunked
engine as `linear` (`kernels.linear.attend`, band of C + w keys per query block); decode on
an attnlab `StateCache` keeps the last w - 1 keys and the state of the older ones.
Causal self-attention only (cross-attention and non-causal calls are refused: a window
needs positions and a past).
"""

from __future__ import annotations

from ..core.call import AttnCall, KernelOutput
from ..core.hooks import Hooks


def forward(call: AttnCall, hooks: Hooks, window: int | None = None, feature_map: str | None = None,
            maps: object = None, chunk: int = 64, features: int | None = None, seed: int = 0,
            sliding: str = "softmax", teacher: bool = False, exact: bool = False) -> KernelOutput:
    """Sliding-window softmax (w = `window`, default the maps' window or 64) + linear attention
    before it; output [B, Q, H, Dv]. Other parameters as `kernels.linear.forward`."""
    from ..convert.engine import run

    return run(call, hooks, "hybrid", feature_map, maps, chunk, features, seed, sliding, teacher, exact,
               window=window)
