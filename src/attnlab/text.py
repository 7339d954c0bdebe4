"""Turn user text into model inputs, refusing what the model cannot take."""

from __future__ import annotations


class InputError(ValueError):
    """Text the model cannot take: empty, or longer than its context."""


def encode(model, tokenizer, text: str | list[str], max_tokens: int | None = None, truncate: bool = False):
    """Tokenize `text` (a string or a batch of strings, padded) into a dict of tensors.

    max_tokens: cap on the input length; default the model's context length.
    truncate: cut longer input to max_tokens instead of raising InputError.
    """
    from .models import context_length

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
