"""Scale out: sequence-parallel ring attention for stock Hugging Face models (torch.distributed).

    import attnlab.distributed as ad
    logits = ad.forward(model, input_ids, layout="striped")   # on every rank; rank 0 gets logits
    tokens = ad.generate(model, input_ids, max_new_tokens=32)  # sharded KV cache
    with ad.session(model, input_ids) as shard:                # training: exact ring backward
        loss = loss_fn(model(**shard.inputs).logits, labels[:, shard.positions])

See docs/distributed.md. Nothing is imported until used.
"""

from __future__ import annotations

from .._lazy import exports as _exports

_EXPORTS = {
    "forward": "attnlab.distributed.api",
    "generate": "attnlab.distributed.api",
    "session": "attnlab.distributed.api",
    "Shard": "attnlab.distributed.api",
    "head_stats": "attnlab.distributed.stats",
    "RingContext": "attnlab.distributed.ring",
    "DistributedError": "attnlab.distributed.comm",
    "LAYOUTS": "attnlab.distributed.layout",
    "shard_index": "attnlab.distributed.layout",
}

__all__ = sorted(_EXPORTS)

__getattr__ = _exports(__name__, _EXPORTS)
