"""The optional second stage (LoLCATs): LoRA on q / k / v / o with the next-token loss,
the model running its converted (linear / hybrid) attention, the feature maps frozen.

    model = attnlab.convert.lora_stage(model, tok, maps, tokens=16384)   # merged, plain model

PEFT injects the adapters into the model's own Linear layers (no module is replaced in
the attention path attnlab dispatches); after training they are merged
(`merge_and_unload`), so the result is a plain transformers model. The maps' recorded
attention-module hashes are updated to the merged weights (they refuse any other model).
"""

from __future__ import annotations

import time

import torch

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def _lora_steps(model, maps, data, lr: float, clip: float, progress: bool) -> list:
    """AdamW on the LoRA parameters, one sequence batch per step; returns [{step, tokens, loss}]."""
    from tqdm.auto import tqdm

    from ..core.session import attach
    from .train import kernel_of

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    history, t0 = [], time.perf_counter()
    bar = tqdm(total=data.shape[0], disable=not progress, unit="step", dynamic_ncols=True)
    with attach(model, kernel=kernel_of(maps), maps=maps):
        for step, ids in enumerate(data, 1):
            loss = model(input_ids=ids[None], labels=ids[None], use_cache=False).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            history.append({"step": step, "tokens": step * ids.numel(), "loss": float(loss.detach())})
            bar.set_postfix_str(f"nll {float(loss):.3f} | {step * ids.numel() / (time.perf_counter() - t0):.0f} tok/s")
            bar.update(1)
    bar.close()
    return history


def lora_stage(model, tok, maps, tokens: int = 16384, text: str | None = None, data: torch.Tensor | None = None,
               seq_len: int = 256, r: int = 8, alpha: int = 16, lr: float = 1e-4, clip: float = 1.0,
               seed: int = 0, progress: bool = True):
    """Train LoRA (rank r on q/k/v/o) with the next-token loss under the converted attention;
    returns the merged model (the maps get meta['lora'] and updated module hashes)."""
    from peft import LoraConfig, get_peft_model

    from .saved import module_hash
    from .train import TRAIN_TEXT, _site_modules, ids_hash, sequences, text_of

    torch.manual_seed(seed)
    if data is None:
        data = sequences(tok, text if text is not None else text_of(TRAIN_TEXT), seq_len, tokens)
    maps.requires_grad_(False)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(TARGETS))
    peft_model = get_peft_model(model, config)
    t0 = time.perf_counter()
    history = _lora_steps(peft_model.base_model.model, maps, data, lr, clip, progress)
    merged = peft_model.merge_and_unload()
    mods = {f"{s.stack}_{s.role}_{s.layer}": m for s, m in _site_modules(merged)}
    maps.meta["modules"] = {k: module_hash(mods[k]) for k in maps.layers if k in mods}
    maps.meta["lora"] = {"r": r, "alpha": alpha, "lr": lr, "targets": list(TARGETS), "tokens": int(data.numel()),
                         "data_sha256": ids_hash(data), "seconds": time.perf_counter() - t0, "history": history}
    return merged
