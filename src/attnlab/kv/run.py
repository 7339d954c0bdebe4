"""Generate under a KV policy and report what the cache held: the library side of `attnlab generate`."""

from __future__ import annotations

import time


def generate(prompt: str, model_name: str | None = None, kv: str = "none", max_new_tokens: int = 32,
             kernel: str = "sdpa", keep_last: int = 0, threads: int = 0) -> dict:
    """Greedy generation of `prompt` with `model.generate()` under attach(kernel, kv).

    keep_last > 0 overrides the policy's keep_last. Returns {'text', 'new_tokens', 'prompt_tokens',
    'kv' (spec), 'kv_bytes' (total), 'kv_bytes_full' (an uncompressed cache of the same length),
    'per_layer' (bytes held per layer), 'skipped', 'prefill_s', 'decode_tokens_per_s', 'seconds'}.
    """
    import torch

    from .. import attach, load
    from ..errors import InputError
    from .policy import parse

    policy = parse(kv if keep_last == 0 else f"{kv}{',' if ':' in kv else ':'}keep_last={keep_last}")
    if threads:
        torch.set_num_threads(threads)
    model, tok = load(model_name)
    if not model.can_generate():
        raise InputError(f"{model_name or 'the model'} cannot generate text")
    ids = tok(prompt, return_tensors="pt")
    stamps = []

    class Clock:  # when each generation step's first layer starts
        def on_call(self, call):
            if call.layer == 0 and call.role == "self":
                stamps.append(time.perf_counter())

    start = time.perf_counter()
    with torch.no_grad(), attach(model, kernel=kernel, kv=policy, observe=[Clock()]) as s:
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id or tok.eos_token_id)
        held = s.kv_bytes
    seconds = time.perf_counter() - start
    new = out[0, ids["input_ids"].shape[1]:]
    n_layers, per_token = _full_bytes_per_token(model)
    decode_s = stamps[-1] - stamps[1] if len(stamps) > 2 else 0.0
    return dict(text=tok.decode(new, skip_special_tokens=True), new_tokens=int(new.numel()),
                prompt_tokens=int(ids["input_ids"].shape[1]), kv=str(kv), kv_bytes=held["total"],
                kv_bytes_full=per_token * n_layers * int(out.shape[1] - 1),
                per_layer={str(k): v["held"] for k, v in held["layers"].items()}, skipped=held["skipped"],
                prefill_s=(stamps[1] - stamps[0]) if len(stamps) > 1 else seconds,
                decode_tokens_per_s=(len(stamps) - 2) / decode_s if decode_s > 0 else None, seconds=seconds)


def _full_bytes_per_token(model) -> tuple[int, int]:
    """(layers, bytes one token's keys + values take in one layer) of an uncompressed fp cache."""
    cfg = model.config.get_text_config()
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    elt = next(model.parameters()).element_size()
    return cfg.num_hidden_layers, 2 * heads * dim * elt
