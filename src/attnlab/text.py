"""Turn user text into model inputs, refusing what the model cannot take."""

from __future__ import annotations

from .errors import InputError

__all__ = ["InputError", "encode", "read_text"]


def read_text(path, what: str = "file") -> str:
    """The UTF-8 text of `path`; any reason it cannot be read is an InputError of one line.

    what: how the message names the file, e.g. "--text".
    """
    from pathlib import Path

    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what}: no such file {path}") from None
    except IsADirectoryError:
        raise InputError(f"{what}: {path} is a directory, not a text file") from None
    except PermissionError:
        raise InputError(f"{what}: permission denied reading {path}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{what}: {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                         f"offset {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise InputError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None


def encode(model, tokenizer, text: str | list[str], max_tokens: int | None = None, truncate: bool = False):
    """Tokenize `text` (a string or a batch of strings, padded) into a dict of tensors.

    max_tokens: cap on the input length; default the model's context length.
    truncate: cut longer input to max_tokens instead of raising InputError.
    """
    from .models import context_length

    reads = getattr(model, "main_input_name", "input_ids")
    if reads != "input_ids" or tokenizer is None:
        raise InputError(f"{type(model).__name__} reads {reads}, not text (or has no tokenizer); "
                         "attach it from Python with its own inputs: with attnlab.attach(model): model(...)")
    texts = [text] if isinstance(text, str) else list(text)
    if not texts or any(not t or not t.strip() for t in texts):
        raise InputError("empty text: give at least one non-blank character")
    limit = context_length(model)
    cap = min(x for x in (max_tokens, limit) if x is not None) if (max_tokens or limit) else None
    if tokenizer.pad_token is None and len(texts) > 1:
        tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer(texts, return_tensors="pt", padding=len(texts) > 1)
    n = enc["input_ids"].shape[1]
    if cap is not None and n > cap:
        if not truncate:
            what = f"the model's context of {limit} tokens" if cap == limit else f"max_tokens={cap}"
            raise InputError(f"text is {n} tokens, longer than {what}; shorten it or pass a smaller input")
        enc = {k: v[:, :cap] for k, v in enc.items()}
    return dict(enc)


def teacher_forced(model, enc: dict) -> dict:
    """enc plus the decoder side of an encoder-decoder model (no change for other models).

    The decoder gets the same text shifted right by one, starting with the model's
    `decoder_start_token_id` (teacher forcing: the decoder reads the input as if it were
    producing it), so encoder, decoder and cross-attention all see the user's tokens:
    decoder position i holds input token i - 1. Padding stays on the side the tokenizer
    put it; `decoder_attention_mask` marks the decoder's real tokens.
    """
    import torch

    cfg = model.config
    if not getattr(cfg, "is_encoder_decoder", False) or "decoder_input_ids" in enc:
        return enc
    start = getattr(cfg, "decoder_start_token_id", None)
    start = getattr(cfg, "pad_token_id", None) if start is None else start
    if start is None:
        raise InputError(f"{type(model).__name__} has no decoder_start_token_id to start its decoder with")
    ids = enc["input_ids"]  # [B, T]
    mask = enc.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask
    dec, dec_mask = torch.full_like(ids, start), torch.zeros_like(mask)
    for b in range(ids.shape[0]):
        real = mask[b].bool()
        idx = real.nonzero().squeeze(1)  # the row's real positions, contiguous
        row = torch.cat([ids.new_tensor([start]), ids[b, idx][:-1]])
        dec[b, idx], dec_mask[b, idx] = row, 1
    return {**enc, "decoder_input_ids": dec, "decoder_attention_mask": dec_mask}


def real_masks(enc: dict):
    """HeadStats' `real`: the attention mask, or per stack {"encoder", "decoder"} for an
    encoder-decoder input (the decoder's queries are its own tokens)."""
    if "decoder_attention_mask" not in enc:
        return enc.get("attention_mask")
    return {"encoder": enc.get("attention_mask"), "decoder": enc["decoder_attention_mask"]}
