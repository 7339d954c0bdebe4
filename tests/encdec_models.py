"""Tiny T5 / BART models saved as Hugging Face folders with a word-level tokenizer (offline).

The tokenizer is built here with the `tokenizers` library (WordLevel over a fixed word
list, whitespace pre-tokenizer) and wrapped in PreTrainedTokenizerFast, so a folder loads
with `attnlab.load(folder)` like any downloaded model.
"""

from __future__ import annotations

from pathlib import Path

from archs import ARCHS, VOCAB

TEXT = ("the quick brown fox jumps over the lazy dog . the dog sleeps and the fox runs far away . "
        "a bird sings in the tall tree while the cat waits below .")
WORDS = sorted(set(TEXT.split()))
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3: pad, bos, eos as in tests/archs.py


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS)}
    assert len(vocab) <= VOCAB
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def save(name: str, folder: Path) -> Path:
    """ARCHS[name] (t5, bart) and the word tokenizer saved into `folder`; returns it."""
    model = ARCHS[name].build()
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder
