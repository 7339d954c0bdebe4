"""Which global sequence positions each rank holds: the layouts of the ring.

    ring     contiguous shards: rank r holds [r*n, (r+1)*n). Under a causal mask rank r
             sees r + 1 of the N key blocks, so the last rank does ~2N/(N+1) times the
             mean work (Ring Attention, Liu et al. 2023).
    striped  round robin: rank r holds r, r+N, r+2N, ... Every rank sees about half of
             every key block, so causal work is balanced (Striped Attention, Brandon et al.).
    zigzag   2N contiguous chunks, rank r holds chunk r and chunk 2N-1-r (ring-flash-
             attention's zigzag): balanced too, with contiguous runs of positions.

Every layout keeps a rank's positions ascending, so query and key chunks inside a block
stay ordered and whole chunks in a causal future or outside a window are skipped.
"""

from __future__ import annotations

import torch

LAYOUTS = ("ring", "striped", "zigzag")


def check_layout(layout: str) -> str:
    """`layout` if valid; otherwise an OptionError listing the valid ones."""
    from ..errors import OptionError

    if layout not in LAYOUTS:
        raise OptionError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    return layout


def multiple(layout: str, world: int) -> int:
    """The sequence length must be a multiple of this for `layout` on `world` ranks."""
    return 2 * world if layout == "zigzag" and world > 1 else world


def padded_length(n: int, layout: str, world: int) -> int:
    """The smallest length >= n that `layout` can split evenly over `world` ranks."""
    m = multiple(layout, world)
    return -(-n // m) * m


def shard_index(length: int, layout: str, world: int) -> torch.Tensor:
    """Global positions held by every rank: long [world, length // world], rows ascending.

    length must be a multiple of `multiple(layout, world)` (see `padded_length`).
    """
    check_layout(layout)
    m = multiple(layout, world)
    if length % m:
        raise ValueError(f"layout {layout!r} on {world} ranks needs a length divisible by {m}, got {length}")
    pos = torch.arange(length)
    if layout == "ring" or world == 1:
        return pos.view(world, -1)  # [N, n]
    if layout == "striped":
        return pos.view(-1, world).t().contiguous()  # [N, n]: rank r holds r, r+N, ...
    chunks = pos.view(2 * world, -1)  # [2N, n/2]
    return torch.stack([torch.cat([chunks[r], chunks[2 * world - 1 - r]]) for r in range(world)])
