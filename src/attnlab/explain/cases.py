"""Explanation cases from real text: passages of Shakespeare, the answer in exactly one.

Two kinds, both with a known gold passage:
  "needle": a planted fact ("The secret number of Viola is 4817.") in one passage; the
            question is the completion "... The secret number of Viola is", the answer
            the digits;
  "line":   a real verse line from one passage; the question quotes its first words,
            the answer is the rest of the line.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..bench.needles import NAMES, _sentence_boundary


@dataclass(frozen=True)
class Case:
    """One case: passages, question, answer and the index of the passage that holds it."""

    kind: str
    passages: list
    question: str
    answer: str
    gold: int


def _passages(tokenizer, rng, n_passages: int, n_tokens: int) -> list:
    from ..bench.corpora import plays, shakespeare

    out, names = [], plays()
    for _ in range(n_passages):
        text = shakespeare(rng.choice(names))
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        start = rng.randint(0, len(ids) - n_tokens - 1)
        chunk = tokenizer.decode(ids[start:start + n_tokens])
        out.append(chunk[chunk.find("\n") + 1:].strip() if "\n" in chunk[:200] else chunk.strip())
    return out


def needle_case(tokenizer, seed: int, n_passages: int = 6, n_tokens: int = 150) -> Case:
    rng = random.Random(seed)
    passages = _passages(tokenizer, rng, n_passages, n_tokens)
    name, number, gold = rng.choice(NAMES), str(rng.randint(1000, 9999)), rng.randrange(n_passages)
    body = passages[gold]
    cut = _sentence_boundary(body, int(len(body) * rng.uniform(0.2, 0.8)))
    passages[gold] = f"{body[:cut]} The secret number of {name} is {number}. {body[cut:]}".strip()
    question = f"Remember the secret number. The secret number of {name} is"
    return Case("needle", passages, question, number, gold)


def line_case(tokenizer, seed: int, n_passages: int = 6, n_tokens: int = 150) -> Case:
    rng = random.Random(seed)
    for _ in range(50):
        passages = _passages(tokenizer, rng, n_passages, n_tokens)
        gold = rng.randrange(n_passages)
        lines = [ln.strip() for ln in passages[gold].split("\n") if 7 <= len(ln.split()) <= 14]
        unique = [ln for ln in lines if sum(ln in p for p in passages) == 1]
        if unique:
            words = rng.choice(unique).split()
            head, tail = " ".join(words[:4]), " ".join(words[4:])
            question = f'In the text above, the line that begins "{head}" continues:'
            return Case("line", passages, question, tail, gold)
    raise ValueError(f"no usable verse line found for seed {seed}")


def make_cases(tokenizer, n: int = 40, seed: int = 0, **sizes) -> list:
    """n cases, alternating needle and line cases, reproducible from `seed`."""
    return [(needle_case if i % 2 == 0 else line_case)(tokenizer, seed * 10_000 + i, **sizes) for i in range(n)]
