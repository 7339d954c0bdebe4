"""A context made of passages, a question and an answer, as one token sequence with spans.

Layout (pieces tokenized separately, so passage boundaries are exact token boundaries):
    [special prefix] passage_1 + sep ... passage_P + sep  question  answer
The answer is appended verbatim (a leading space is added if it has none), so the
question should end where the answer starts, e.g. "Question: Who ...?\nAnswer:" or a
completion such as "The secret number of Horatio is".
"""

from __future__ import annotations

from dataclasses import dataclass

SEP = "\n\n"


@dataclass(frozen=True)
class Context:
    """Token pieces of one explanation case (lists of token ids)."""

    prefix: list
    passages: list  # list[list[int]], each passage including its separator
    question: list
    answer: list

    def ids(self, drop: int | None = None) -> list:
        """All token ids in order, without passage `drop` if given."""
        kept = [p for k, p in enumerate(self.passages) if k != drop]
        return self.prefix + [t for p in kept for t in p] + self.question + self.answer

    def spans(self) -> list:
        """Token range (start, end) of each passage in ids()."""
        out, pos = [], len(self.prefix)
        for p in self.passages:
            out.append((pos, pos + len(p)))
            pos += len(p)
        return out

    def answer_targets(self, drop: int | None = None):
        """Positions whose next token is an answer token: LongTensor [len(answer)]."""
        import torch

        end = len(self.ids(drop))
        return torch.arange(end - len(self.answer) - 1, end - 1)

    def question_rows(self):
        """Positions of the question tokens: LongTensor [len(question)]."""
        import torch

        start = len(self.prefix) + sum(len(p) for p in self.passages)
        return torch.arange(start, start + len(self.question))

    def tensor(self, drop: int | None = None):
        """input_ids [1, T]."""
        import torch

        return torch.tensor([self.ids(drop)], dtype=torch.long)


def _prefix(tokenizer) -> list:
    ids = tokenizer("a")["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    return list(ids[: len(ids) - len(bare)]) if ids[-len(bare):] == bare else []


def build(tokenizer, passages: list, question: str, answer: str) -> Context:
    """Tokenize a case; raises ValueError on an empty passage list, question or answer."""
    if not passages or any(not p.strip() for p in passages):
        raise ValueError("give at least one passage, none of them blank")
    if not question.strip() or not answer.strip():
        raise ValueError("question and answer must not be blank")

    def tok(text):
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    answer = answer if answer[:1].isspace() else " " + answer
    return Context(_prefix(tokenizer), [tok(p.strip() + SEP) for p in passages], tok(question.rstrip()), tok(answer))


def split_passages(text: str) -> list:
    """Passages of a plain-text context file: blocks separated by a line holding only '---'
    or, if there is no such line, by blank lines."""
    import re

    parts = re.split(r"^\s*---\s*$", text, flags=re.MULTILINE)
    if len(parts) == 1:
        parts = re.split(r"\n\s*\n", text)
    return [p.strip() for p in parts if p.strip()]
