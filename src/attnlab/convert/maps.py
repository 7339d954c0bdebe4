"""Feature maps phi for linear attention, and the per-layer container the kernels are given.

Linear attention replaces exp(scaling * q . k) by phi_q(q) . phi_k(k), so a causal output is
    y_i = sum_{j<=i} phi_q(q_i).phi_k(k_j) v_j / sum_{j<=i} phi_q(q_i).phi_k(k_j)
and the keys can be summed once into a state S = sum_j phi_k(k_j) v_j^T [F, Dv] and a
normaliser z = sum_j phi_k(k_j) [F]. Maps (x [B, H, T, D] -> phi [B, H, T, F], fp32):

  elu        elu(x) + 1                                      F = D, no parameters
  relu       relu(x)                                         F = D, no parameters
  performer  exp(w_r . x' - |x'|^2 / 2) / sqrt(m), x' = x * scaling^(1/2): FAVOR+ positive
             random features (orthogonal Gaussian rows w_r, fixed by a seed); F = m
  hedgehog   [softmax(x W_h + b_h), softmax(-(x W_h + b_h))] per head h (Hedgehog, Zhang et
             al. 2024; LoLCATs' map): W_h [D, D] starts as the identity; F = 2 D, learned

Queries and keys get separate maps (LoLCATs: feature_map_q, feature_map_k), one per query
head (keys are repeated to the query heads first, so the state is [B, H, F, Dv]).
`LayerMaps` also holds the hybrid kernel's per-head mixing logit (gamma = sigmoid(mix)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import SpecError

KINDS = ("elu", "relu", "performer", "hedgehog")
WINDOW_FACTOR = 0.1  # LoLCATs' initial sliding-window factor (sigmoid(-2.1972))


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise SpecError(f"unknown feature map {kind!r}; valid feature maps: {', '.join(KINDS)}")
    return kind


def orthogonal_features(heads: int, dim: int, m: int, seed: int) -> torch.Tensor:
    """FAVOR+ projections [heads, m, dim]: blocks of orthogonal rows scaled to chi(dim) norms."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(heads):
        blocks = [torch.linalg.qr(torch.randn(dim, dim, generator=g))[0].T for _ in range(math.ceil(m / dim))]
        rows = torch.cat(blocks)[:m]  # [m, dim], orthonormal within each block
        norms = torch.randn(m, dim, generator=g).norm(dim=-1, keepdim=True)  # chi(dim) lengths
        out.append(rows * norms)
    return torch.stack(out)


class FeatureMap(nn.Module):
    """One phi for one side (queries or keys) of one layer: x [B, H, T, D] -> [B, H, T, F] fp32."""

    def __init__(self, kind: str, heads: int, head_dim: int, features: int | None = None, seed: int = 0):
        super().__init__()
        self.kind, self.heads, self.head_dim = check_kind(kind), heads, head_dim
        if kind == "performer":
            self.register_buffer("proj", orthogonal_features(heads, head_dim, features or head_dim, seed))
        if kind == "hedgehog":
            self.weight = nn.Parameter(torch.eye(head_dim).repeat(heads, 1, 1))  # [H, D, D]
            self.bias = nn.Parameter(torch.zeros(heads, 1, head_dim))  # [H, 1, D]

    @property
    def dim(self) -> int:
        """F, the feature dimension."""
        if self.kind == "performer":
            return self.proj.shape[1]
        return 2 * self.head_dim if self.kind == "hedgehog" else self.head_dim

    def forward(self, x: torch.Tensor, scaling: float) -> torch.Tensor:
        if x.shape[1] != self.heads or x.shape[-1] != self.head_dim:
            raise ValueError(f"feature map for {self.heads} heads of dim {self.head_dim} got x of shape {tuple(x.shape)}")
        x = x.float()
        if self.kind == "elu":
            return nn.functional.elu(x) + 1
        if self.kind == "relu":
            return torch.relu(x)
        if self.kind == "performer":
            x = x * math.sqrt(scaling)
            proj = torch.matmul(x, self.proj.transpose(-1, -2))  # [B, H, T, m]
            return torch.exp(proj - 0.5 * x.square().sum(-1, keepdim=True)) / math.sqrt(self.proj.shape[1])
        u = torch.matmul(x, self.weight) + self.bias  # [B, H, T, D]
        return torch.cat([torch.softmax(u, dim=-1), torch.softmax(-u, dim=-1)], dim=-1)


class LayerMaps(nn.Module):
    """The query map, the key map and the hybrid mixing logits [H] of one attention layer."""

    def __init__(self, kind: str, heads: int, head_dim: int, features: int | None = None, seed: int = 0):
        super().__init__()
        self.q = FeatureMap(kind, heads, head_dim, features, seed)
        self.k = FeatureMap(kind, heads, head_dim, features, seed + 1)
        self.mix = nn.Parameter(torch.full((heads,), math.log(WINDOW_FACTOR / (1 - WINDOW_FACTOR))))

    def gamma(self) -> torch.Tensor:
        """The sliding-window factor of each head, sigmoid(mix): [1, H, 1, 1]."""
        return torch.sigmoid(self.mix).view(1, -1, 1, 1)


def site_key(site) -> str:
    """The module key of a call site: 'decoder_self_3'."""
    return f"{site.stack}_{site.role}_{site.layer}"


class Maps(nn.Module):
    """Every converted layer's `LayerMaps`, keyed by site, plus the recipe that made them.

    kind: feature map name; window: the softmax window they were trained with (0 = pure
    linear). `losses` collects the per-layer transfer MSE of a teacher forward (site -> loss).
    """

    def __init__(self, kind: str, window: int, layers: dict[str, tuple[int, int]], features: int | None = None,
                 seed: int = 0):
        super().__init__()
        self.kind, self.window, self.features, self.seed = check_kind(kind), int(window), features, seed
        self.shapes = dict(layers)  # site key -> (heads, head_dim)
        self.layers = nn.ModuleDict({key: LayerMaps(kind, h, d, features, seed + 7919 * i)
                                     for i, (key, (h, d)) in enumerate(sorted(layers.items()))})
        self.losses: dict[str, torch.Tensor] = {}
        self.meta: dict = {}
        self.verified: set = set()  # (site key, id(module)) whose weights matched meta['modules']

    def of(self, site) -> LayerMaps:
        key = site_key(site)
        if key not in self.layers:
            raise SpecError(f"the feature maps have no layer {key!r} (they hold {len(self.layers)} layers: "
                            f"{', '.join(list(self.layers)[:4])}...); were they made for another model?")
        return self.layers[key]


_DEFAULTS: dict = {}


def default_maps(kind: str, heads: int, head_dim: int, features: int | None, seed: int) -> LayerMaps:
    """Untrained maps for a kernel run without `maps` (elu, relu, performer with a fixed seed)."""
    if kind == "hedgehog":
        raise SpecError("feature_map='hedgehog' is learned: pass maps=attnlab.convert.load(DIR) or a Maps")
    key = (kind, heads, head_dim, features, seed)
    if key not in _DEFAULTS:
        _DEFAULTS[key] = LayerMaps(kind, heads, head_dim, features, seed).requires_grad_(False)
    return _DEFAULTS[key]
