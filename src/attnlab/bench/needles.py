"""Needle-in-a-haystack cases built from real text.

A needle sentence ("The secret number of Horatio is 4817.") is inserted at a chosen depth
of a real-text haystack; the model is asked to complete "... The secret number of Horatio
is" and must copy the number. Exact match on the digits. The completion-style question
suits small base and instruct models alike.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = ("Horatio", "Ophelia", "Laertes", "Rosalind", "Orsino", "Viola", "Portia", "Benedick",
         "Beatrice", "Cordelia", "Miranda", "Prospero", "Banquo", "Desdemona", "Lysander", "Helena")


@dataclass(frozen=True)
class NeedleCase:
    """One needle test. `prompt` ends where the answer must start; `answer` is the digits."""

    prompt: str
    answer: str
    needle: str
    depth: float  # 0 = start of the haystack, 1 = end
    n_tokens: int  # prompt length in tokens
    needle_start: int  # character offset of the needle in `prompt`


def make_case(tokenizer, haystack: str, n_tokens: int, depth: float, seed: int) -> NeedleCase:
    """A prompt of about `n_tokens` tokens: haystack with a needle at `depth`, then the question."""
    rng = random.Random(seed)
    name, number = rng.choice(NAMES), str(rng.randint(1000, 9999))
    needle = f"The secret number of {name} is {number}."
    question = f"\n\nRemember the secret number. The secret number of {name} is"
    overhead = len(tokenizer(needle + " " + question, add_special_tokens=False)["input_ids"]) + 4
    ids = tokenizer(haystack, add_special_tokens=False)["input_ids"]
    budget = n_tokens - overhead
    if budget <= 0 or budget > len(ids):
        raise ValueError(f"cannot build a {n_tokens}-token needle case from a {len(ids)}-token haystack")
    start = rng.randint(0, len(ids) - budget)
    body = tokenizer.decode(ids[start:start + budget])
    cut = _sentence_boundary(body, int(len(body) * depth))
    before, after = body[:cut], body[cut:]
    prompt = f"{before} {needle} {after}{question}"
    n = len(tokenizer(prompt)["input_ids"])
    return NeedleCase(prompt, number, needle, depth, n, len(before) + 1)


def _sentence_boundary(text: str, pos: int) -> int:
    """The end of the line or sentence nearest to `pos` (so the needle is not mid-word)."""
    if pos <= 0:
        return 0
    if pos >= len(text):
        return len(text)
    for i in range(pos, min(len(text), pos + 400)):
        if text[i] in ".\n!?;":
            return i + 1
    return pos


def make_cases(tokenizer, haystack: str, lengths, depths, seed: int = 0) -> list[NeedleCase]:
    """One case per (length, depth), each with its own name, number and haystack offset."""
    return [make_case(tokenizer, haystack, n, d, seed * 1000 + i)
            for i, (n, d) in enumerate((n, d) for n in lengths for d in depths)]


def is_correct(case: NeedleCase, generated: str) -> bool:
    """Exact match: the first number in the generated text equals the needle's number."""
    import re

    found = re.search(r"\d+", generated)
    return found is not None and found.group(0) == case.answer
