"""Train / dev / test splits of a multiple-choice task, and the training loss on a batch.

Splits: items are de-duplicated by prompt, then each goes to train (50%), dev (15%) or
test (35%) by the sha256 of its prompt, so the three never share a prompt and are the same
on every machine; each split is recorded by the sha256 of its sorted prompts.
Loss: the negative log-likelihood of the correct choice's tokens (" " + choice, tokenized
apart from the prompt exactly as the evaluator scores it), summed over those tokens and
averaged over the batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from ..errors import OptionError

BUCKETS = {"train": range(0, 10), "dev": range(10, 13), "test": range(13, 20)}  # of 20


@dataclass(frozen=True)
class Splits:
    """Items of each split and the sha256 of each split's prompts."""

    train: list
    dev: list
    test: list

    def hashes(self) -> dict:
        return {name: split_hash(getattr(self, name)) for name in BUCKETS}

    def sizes(self) -> dict:
        return {name: len(getattr(self, name)) for name in BUCKETS}


def split_hash(items) -> str:
    h = hashlib.sha256()
    for p in sorted(it.prompt for it in items):
        h.update(p.encode() + b"\0")
    return h.hexdigest()


def _bucket(prompt: str) -> str:
    b = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big") % 20
    return next(name for name, r in BUCKETS.items() if b in r)


def task_splits(task: str, train_limit: int | None = None, test_limit: int | None = None) -> Splits:
    """The task's items split three ways (see module doc); train_limit keeps the first N train items."""
    from ..evals.tasks import load_task

    seen, parts = set(), {name: [] for name in BUCKETS}
    for it in load_task(task):
        if it.prompt not in seen:
            seen.add(it.prompt)
            parts[_bucket(it.prompt)].append(it)
    if train_limit is not None and train_limit < 1:
        raise OptionError(f"--train-items must be >= 1, got {train_limit}")
    if min(len(v) for v in parts.values()) < 8:
        raise OptionError(f"task {task!r}: too few items to split ({', '.join(f'{k} {len(v)}' for k, v in parts.items())})")
    return Splits(parts["train"][:train_limit], parts["dev"], parts["test"][:test_limit])


def encode_answers(tokenizer, items, max_prompt: int | None = None) -> list[tuple[list[int], list[int]]]:
    """Per item: (prompt ids, correct-choice ids); the prompt keeps its last `max_prompt` tokens."""
    out = []
    for it in items:
        p = tokenizer(it.prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(" " + it.choices[it.answer], add_special_tokens=False)["input_ids"]
        out.append((p[-max_prompt:] if max_prompt else p, a))
    return out


def collate(rows, pad_id: int) -> dict:
    """Left-padded batch, every answer ending at the last position: input_ids, attention_mask,
    position_ids [B, T] (counted from each row's first real token, as the evaluator does) and
    labels [B, A] (the answer tokens right-aligned, -100 before a shorter answer), A = longest answer."""
    T = max(len(p) + len(a) for p, a in rows)
    A = max(len(a) for _, a in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    labels = torch.full((len(rows), A), -100, dtype=torch.long)
    for r, (p, a) in enumerate(rows):
        n = len(p) + len(a)
        ids[r, T - n:] = torch.tensor(p + a)
        mask[r, T - n:] = 1
        labels[r, A - len(a):] = torch.tensor(a)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp_min(0),
            "labels": labels}


def answer_nll(model, batch: dict) -> torch.Tensor:
    """Mean over the batch of -sum log p(answer tokens | prompt); a scalar with gradients.

    Only the logits that predict answer tokens are computed (logits_to_keep = A + 1): the
    vocabulary projection is a large share of a small model's compute.
    """
    labels = batch["labels"]  # [B, A]
    A = labels.shape[1]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=A + 1).logits[:, :-1]  # [B, A, V]
    logp = torch.log_softmax(logits.float(), -1)
    keep = labels != -100
    got = logp.gather(-1, labels.clamp_min(0)[..., None])[..., 0] * keep  # [B, A]
    return -(got.sum(-1)).mean()
