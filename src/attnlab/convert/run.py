"""`convert`: load a model, transfer, measure held-out perplexity, save — what `attnlab convert` runs."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import OptionError
from .maps import check_kind


def check_options(feature_map: str, window: int, tokens: int, seq_len: int, eval_tokens: int) -> None:
    """Validate every option before any work (OptionError / SpecError)."""
    check_kind(feature_map)
    if window < 0:
        raise OptionError(f"--window must be >= 0 (0 = pure linear attention), got {window}")
    if seq_len < 2 or tokens < seq_len:
        raise OptionError(f"--tokens ({tokens}) must hold at least one --seq-len ({seq_len}) sequence")
    if eval_tokens < 0:
        raise OptionError(f"--eval-tokens must be >= 0, got {eval_tokens}")


def convert(model_name=None, feature_map: str = "hedgehog", window: int = 64, tokens: int = 65536, out=None,
            seq_len: int = 256, eval_tokens: int = 4096, eval_len: int = 512, progress: bool = True,
            **options) -> dict:
    """Transfer `model_name` (default SmolLM2-135M) to `feature_map` + `window`, measure the
    held-out perplexity of teacher and converted model, save the maps to `out`.

    Returns {"out", "feature_map", "window", "train_tokens", "transfer_seconds",
    "teacher_ppl", "converted_ppl", "recovery"} (perplexities None when eval_tokens = 0)."""
    import torch

    from ..models import load
    from .saved import save
    from .train import eval_ids, evaluate, kernel_of, transfer

    check_options(feature_map, window, tokens, seq_len, eval_tokens)
    if out is None:
        raise OptionError("--out DIR is required (the feature maps and the checkpoint go there)")
    model, tok = load(model_name)
    t0 = time.perf_counter()
    maps = transfer(model, tok, feature_map, window, tokens=tokens, seq_len=seq_len, out=out, progress=progress,
                    **options)
    seconds = time.perf_counter() - t0
    results = {"train_tokens": maps.meta["data"]["train_tokens"], "transfer_seconds": seconds,
               "threads": torch.get_num_threads()}
    if eval_tokens:
        ids = eval_ids(tok, eval_tokens, min(eval_len, eval_tokens))
        teacher, converted = evaluate(model, ids), evaluate(model, ids, kernel_of(maps), maps=maps)
        maps.meta["data"].update(eval_tokens=int(ids.numel()), eval_sha256=_sha(ids))
        results.update(teacher_ppl=teacher, converted_ppl=converted, recovery=teacher / converted)
    save(maps, out, model, results=results)
    return {"out": str(Path(out)), "feature_map": feature_map, "window": window, **results}


def _sha(ids) -> str:
    from .train import ids_hash

    return ids_hash(ids)
