"""encode(): empty and too-long text are refused with the limit in the message."""

import pytest

import attnlab
import tiny


class Tok:
    """A whitespace tokenizer with the small interface encode() uses."""

    pad_token = "<pad>"
    eos_token = "<eos>"

    def __call__(self, texts, return_tensors=None, padding=False):
        import torch

        rows = [[3 + len(w) % 50 for w in t.split()] for t in texts]
        width = max(map(len, rows))
        ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        return {"input_ids": ids, "attention_mask": mask}


def test_empty_text_is_refused():
    with pytest.raises(attnlab.InputError, match="empty"):
        attnlab.encode(tiny.llama(), Tok(), "   ")


def test_text_longer_than_context_names_the_limit():
    model = tiny.llama(max_position_embeddings=16)
    with pytest.raises(attnlab.InputError, match="20 tokens, longer than the model's context of 16"):
        attnlab.encode(model, Tok(), " ".join(["word"] * 20))


def test_max_tokens_and_truncate():
    model = tiny.llama()
    with pytest.raises(attnlab.InputError, match="max_tokens=5"):
        attnlab.encode(model, Tok(), "a b c d e f g", max_tokens=5)
    enc = attnlab.encode(model, Tok(), "a b c d e f g", max_tokens=5, truncate=True)
    assert enc["input_ids"].shape == (1, 5)
