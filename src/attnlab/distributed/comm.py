"""The ring's transport: torch.distributed point-to-point exchanges with bounded waits.

Nothing here is home-made: the default process group (gloo on CPU, nccl on GPU, set up by
`torchrun` through the usual environment variables) carries every byte. Each exchange
sends tensors to the next rank and receives the same shapes from the previous one with
`isend` / `irecv`, so the caller computes while they travel. Every wait is bounded: a
rank that died or stalled turns into a `DistributedError` naming both ranks, never a hang.
"""

from __future__ import annotations

import datetime
import os

import torch

DEFAULT_TIMEOUT = 120.0  # seconds any one wait may take before the run fails


class DistributedError(RuntimeError):
    """A distributed run cannot go on: a rank died or timed out, or the ranks disagree."""


def ensure_group(timeout: float = DEFAULT_TIMEOUT, backend: str | None = None):
    """The default process group, started from torchrun's environment if none exists yet.

    backend: None = nccl when CUDA is available, else gloo. timeout bounds every
    collective (seconds). Returns (rank, world size).
    """
    import torch.distributed as dist

    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed")
    if not dist.is_initialized():
        missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:
            raise DistributedError(
                f"no process group and no torchrun environment (missing {', '.join(missing)}); run under "
                "`torchrun --nproc-per-node N ...` or call torch.distributed.init_process_group first")
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":  # one GPU per local rank; the model must be moved there by the caller
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    return dist.get_rank(), dist.get_world_size()


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class Exchange:
    """Tensors in flight around the ring: sent to rank + 1, the same shapes received from rank - 1.

    `wait()` returns the received tensors. `tag` keeps concurrent exchanges apart (gloo
    matches by tag; nccl by program order, which is the same on every rank).
    """

    def __init__(self, ring, tensors, tag: int = 0):
        import torch.distributed as dist

        self.ring, self.peer = ring, (ring.rank - 1) % ring.world
        tensors = [t.contiguous() for t in tensors]
        self.received = [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in tensors]
        nxt = (ring.rank + 1) % ring.world
        try:
            self.works = [dist.isend(t, nxt, tag=tag) for t in tensors]
            self.works += [dist.irecv(r, self.peer, tag=tag) for r in self.received]
        except RuntimeError as exc:
            raise self._error(exc) from exc
        ring.bytes_sent += nbytes(tensors)

    def wait(self) -> list[torch.Tensor]:
        timeout = datetime.timedelta(seconds=self.ring.timeout)
        try:
            for work in self.works:
                if not work.wait(timeout):
                    raise RuntimeError("wait returned False")
        except RuntimeError as exc:
            raise self._error(exc) from exc
        return self.received

    def _error(self, exc: Exception) -> DistributedError:
        return DistributedError(
            f"rank {self.ring.rank}: the ring exchange with ranks {self.peer} / {(self.ring.rank + 1) % self.ring.world} "
            f"failed or did not finish within {self.ring.timeout:g} s (did a rank die or stall?): {exc}")


def all_gather(tensor: torch.Tensor, ring) -> list[torch.Tensor]:
    """Every rank's `tensor` (same shape on all ranks), in rank order; bounded by the group timeout."""
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(ring.world)]
    try:
        dist.all_gather(parts, tensor.contiguous())
    except RuntimeError as exc:
        raise DistributedError(f"rank {ring.rank}: all_gather failed or timed out (did a rank die?): {exc}") from exc
    ring.bytes_sent += nbytes([tensor]) * (ring.world - 1)
    return parts


def agree(value: str, what: str, rank: int, world: int) -> None:
    """Raise DistributedError unless every rank passes the same string `value` (a hash)."""
    import torch.distributed as dist

    values = [None] * world
    try:
        dist.all_gather_object(values, value)
    except RuntimeError as exc:
        raise DistributedError(f"rank {rank}: could not compare {what} across ranks (did a rank die?): {exc}") from exc
    if len(set(values)) > 1:
        listed = ", ".join(f"rank {r}: {v[:12]}" for r, v in enumerate(values))
        raise DistributedError(f"the ranks hold different {what} ({listed}); every rank must load the same one")


def tensor_hash(*tensors) -> str:
    """sha256 of the tensors' bytes, shapes and dtypes (fp32 view of everything)."""
    import hashlib

    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{t.numel()}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_hash(model) -> str:
    """sha256 of a model's config and every parameter and buffer (names, shapes, bytes)."""
    import hashlib

    h = hashlib.sha256(model.config.to_json_string().encode())
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(name.encode())
        h.update(tensor_hash(t).encode())
    return h.hexdigest()
