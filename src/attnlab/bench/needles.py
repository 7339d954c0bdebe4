"""Needle-in-a-haystack cases built from real text.

A needle sentence ("The secret number of Horatio is 4817.") is inserted at a chosen depth
of a real-text haystack; the model is asked to complete "... The secret number of Horatio
is" and must copy the number. Exact match on the digits. The completion-style question
suits small base and instruct models alike.

Two harder tasks in the style of RULER (Hsieh et al. 2024) use the same haystacks:

- `make_multikey_case`: several needles with different names and numbers at spread depths;
  the question asks for one of them, the others are distractors (RULER's multi-key NIAH).
- `make_vt_case`: variable tracking: "VAR QKZPD = 48172." then, deeper in the text,
  "VAR MWTRB = VAR QKZPD." ... (a chain of `hops` assignments); the question asks for every
  variable that holds the value, and the answer is correct when all chain names are
  generated (RULER's VT, scored all-or-nothing here).

Every case keeps its question (`NeedleCase.question`, the prompt's suffix after the
haystack), so a KV benchmark can protect or withhold it.
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
    question: str = ""  # the prompt's suffix after the haystack ("" for old records)
    task: str = "needle"  # needle | multikey | vt


def make_case(tokenizer, haystack: str, n_tokens: int, depth: float, seed: int) -> NeedleCase:
    """A prompt of about `n_tokens` tokens: haystack with a needle at `depth`, then the question."""
    rng = random.Random(seed)
    name, number = rng.choice(NAMES), str(rng.randint(1000, 9999))
    needle = f"The secret number of {name} is {number}."
    question = f"\n\nRemember the secret number. The secret number of {name} is"
    body = _haystack(tokenizer, haystack, n_tokens, needle + " " + question, rng)
    cut = _sentence_boundary(body, int(len(body) * depth))
    before, after = body[:cut], body[cut:]
    prompt = f"{before} {needle} {after}{question}"
    n = len(tokenizer(prompt)["input_ids"])
    return NeedleCase(prompt, number, needle, depth, n, len(before) + 1, question)


def _haystack(tokenizer, haystack: str, n_tokens: int, overhead_text: str, rng) -> str:
    """A random window of the haystack that leaves room for `overhead_text` in n_tokens."""
    overhead = len(tokenizer(overhead_text, add_special_tokens=False)["input_ids"]) + 4
    ids = tokenizer(haystack, add_special_tokens=False)["input_ids"]
    budget = n_tokens - overhead
    if budget <= 0 or budget > len(ids):
        raise ValueError(f"cannot build a {n_tokens}-token case from a {len(ids)}-token haystack")
    start = rng.randint(0, len(ids) - budget)
    return tokenizer.decode(ids[start:start + budget])


def _insert(body: str, sentences: list[tuple[float, str]]) -> str:
    """Insert (depth, sentence) pairs at the sentence boundaries nearest their depths."""
    cuts = sorted((_sentence_boundary(body, int(len(body) * d)), s) for d, s in sentences)
    parts, last = [], 0
    for cut, sentence in cuts:
        parts += [body[last:cut], f" {sentence} "]
        last = cut
    return "".join(parts + [body[last:]])


def make_multikey_case(tokenizer, haystack: str, n_tokens: int, depth: float, seed: int,
                       keys: int = 4) -> NeedleCase:
    """`keys` needles (distinct names and numbers); the one asked for sits at `depth`, the
    distractors at evenly spread depths away from it."""
    if keys < 2 or keys > len(NAMES):
        raise ValueError(f"keys must be in 2..{len(NAMES)}, got {keys}")
    rng = random.Random(seed)
    names = rng.sample(NAMES, keys)
    numbers = [str(n) for n in rng.sample(range(1000, 10000), keys)]
    others = [(i + 0.5) / (keys - 1) for i in range(keys - 1)]
    depths = [depth] + [min(0.98, max(0.02, d if abs(d - depth) > 0.08 else d + 0.1)) for d in others]
    needles = [f"The secret number of {n} is {x}." for n, x in zip(names, numbers)]
    question = f"\n\nRemember the secret numbers. The secret number of {names[0]} is"
    body = _haystack(tokenizer, haystack, n_tokens, " ".join(needles) + question, rng)
    text = _insert(body, list(zip(depths[1:], needles[1:])))  # distractors first, then the asked needle
    prompt = _insert(text, [(depth, needles[0])]) + question
    return NeedleCase(prompt, numbers[0], needles[0], depth, len(tokenizer(prompt)["input_ids"]),
                      prompt.index(needles[0]), question, "multikey")


_LETTERS = "BCDFGHJKLMNPQRSTVWXZ"


def make_vt_case(tokenizer, haystack: str, n_tokens: int, depth: float, seed: int,
                 hops: int = 2) -> NeedleCase:
    """A chain "VAR A = 48172." -> "VAR B = VAR A." -> ... (`hops` assignments after the
    first), the first at `depth`, the others spread after it; the question asks for all
    variables holding the value. `answer` is the space-separated chain names."""
    if hops < 1:
        raise ValueError(f"hops must be >= 1, got {hops}")
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < hops + 1:
        name = "".join(rng.choice(_LETTERS) for _ in range(5))
        if name not in names:
            names.append(name)
    value = str(rng.randint(10000, 99999))
    chain = [f"VAR {names[0]} = {value}."] + [f"VAR {names[i + 1]} = VAR {names[i]}." for i in range(hops)]
    depths = [depth + (0.95 - depth) * i / (hops + 1) for i in range(hops + 1)]
    question = (f"\n\nQuestion: find all variables that are assigned the value {value}, directly or "
                f"through other variables.\nAnswer: the variables assigned the value {value} are VAR")
    body = _haystack(tokenizer, haystack, n_tokens, " ".join(chain) + question, rng)
    prompt = _insert(body, list(zip(depths, chain))) + question
    return NeedleCase(prompt, " ".join(names), chain[0], depth, len(tokenizer(prompt)["input_ids"]),
                      prompt.index(chain[0]), question, "vt")


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


TASKS = {"needle": make_case, "multikey": make_multikey_case, "vt": make_vt_case}


def make_cases(tokenizer, haystack: str, lengths, depths, seed: int = 0, task: str = "needle",
               **options) -> list[NeedleCase]:
    """One case per (length, depth), each with its own names, numbers and haystack offset.
    options go to the task's maker (keys= for multikey, hops= for vt)."""
    if task not in TASKS:
        raise ValueError(f"unknown needle task {task!r}; choose from {', '.join(TASKS)}")
    return [TASKS[task](tokenizer, haystack, n, d, seed * 1000 + i, **options)
            for i, (n, d) in enumerate((n, d) for n in lengths for d in depths)]


def answer_score(answer: str, generated: str) -> float:
    """A number answer: 1.0 if the first number generated equals it, else 0.0. A names answer
    (variable tracking): the fraction of the names that occur in the generated text as words
    (RULER's string_match_all)."""
    import re

    if answer.isdigit():
        found = re.search(r"\d+", generated)
        return float(found is not None and found.group(0) == answer)
    words = set(re.findall(r"[A-Z]+", generated))
    names = answer.split()
    return sum(name in words for name in names) / len(names)


def answer_correct(answer: str, generated: str) -> bool:
    """All of the answer found (see `answer_score`)."""
    return answer_score(answer, generated) == 1.0


def is_correct(case: NeedleCase, generated: str) -> bool:
    """Exact match on the case's answer (see `answer_correct`)."""
    return answer_correct(case.answer, generated)
