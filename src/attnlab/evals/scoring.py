"""Score multiple-choice items by the log-likelihood of each choice given the prompt.

Every (item, choice) pair is one sequence: prompt tokens then choice tokens (tokenized
separately, so the prompt's tokens are identical for every choice). Sequences are
left-padded into batches with position ids counted from each row's first real token,
so padding changes nothing; only the logits of the last positions are computed.
For each pair we keep the summed log-probability of the choice tokens and their count:
'sum' normalisation picks the choice with the highest total log-likelihood, 'mean' the
highest per-token average.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NORMS = ("sum", "mean")


@dataclass
class Scores:
    """Per item, per choice: logp [sum of log-probabilities], n [choice tokens]."""

    logp: list[list[float]]
    n: list[list[int]]

    def predictions(self, norm: str = "sum") -> list[int]:
        if norm not in NORMS:
            raise ValueError(f"unknown normalisation {norm!r}; valid: {', '.join(NORMS)}")
        preds = []
        for lp, n in zip(self.logp, self.n):
            vals = lp if norm == "sum" else [a / b for a, b in zip(lp, n)]
            preds.append(max(range(len(vals)), key=vals.__getitem__))
        return preds

    def correct(self, items, norm: str = "sum") -> list[bool]:
        return [p == it.answer for p, it in zip(self.predictions(norm), items)]

    def margin(self, items) -> list[float]:
        """log p(right choice) minus the log of the summed p over all choices (<= 0; 0 = certain)."""
        out = []
        for lp, it in zip(self.logp, items):
            out.append(lp[it.answer] - float(torch.logsumexp(torch.tensor(lp), 0)))
        return out


def _sequences(tokenizer, items):
    """[(item index, prompt text, prompt ids, choice ids)] for every (item, choice)."""
    seqs = []
    for i, it in enumerate(items):
        prompt = tokenizer(it.prompt, add_special_tokens=False)["input_ids"]
        for choice in it.choices:
            seqs.append((i, it.prompt, prompt, tokenizer(" " + choice, add_special_tokens=False)["input_ids"]))
    return seqs


def _batch(seqs, pad_id: int):
    """Left-padded ids [B, T], attention mask [B, T] and position ids [B, T]."""
    T = max(len(p) + len(c) for _, _, p, c in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for r, (_, _, p, c) in enumerate(seqs):
        row = p + c
        ids[r, T - len(row):] = torch.tensor(row)
        mask[r, T - len(row):] = 1
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    return ids, mask, pos


def _prepare(modifiers, tokenizer, seqs, T: int) -> None:
    """Give span-aware modifiers (emphasize) each row's text and character offsets [B, T, 2]."""
    users = [m for m in modifiers if callable(getattr(m, "prepare", None))]
    if not users:
        return
    texts, offsets = [], torch.zeros(len(seqs), T, 2, dtype=torch.long)
    for r, (_, text, p, c) in enumerate(seqs):
        offs = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        start = T - len(p) - len(c)
        offsets[r, start:start + len(p)] = torch.tensor(offs, dtype=torch.long).view(-1, 2)
        texts.append(text)
    for m in users:
        m.prepare(tokenizer, texts, offsets)


def _choice_logp(model, ids, mask, pos, seqs):
    """Summed log-probability of each row's choice tokens: list[float]."""
    keep = max(len(c) for _, _, _, c in seqs) + 1
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep).logits
    logp = torch.log_softmax(logits.float(), dim=-1)  # [B, keep, V]
    out = []
    for r, (_, _, _, c) in enumerate(seqs):
        targets = torch.tensor(c)
        rows = logp[r, keep - 1 - len(c):keep - 1]  # positions that predict the choice tokens
        out.append(float(rows.gather(-1, targets[:, None]).sum()))
    return out


def score(model, tokenizer, items, modify=(), kernel: str = "eager", batch_size: int = 16, progress=None) -> Scores:
    """Log-likelihood of every choice of every item, under attach(kernel, modify).

    progress: optional callable(n_done_sequences, n_total) called after each batch.
    """
    from ..session import attach

    seqs = _sequences(tokenizer, items)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    flat = []
    with torch.inference_mode(), attach(model, kernel=kernel, modify=modify):
        for b in range(0, len(seqs), batch_size):
            chunk = seqs[b:b + batch_size]
            ids, mask, pos = _batch(chunk, pad_id)
            _prepare(modify, tokenizer, chunk, ids.shape[1])
            flat += _choice_logp(model, ids, mask, pos, chunk)
            if progress is not None:
                progress(min(b + batch_size, len(seqs)), len(seqs))
    return _regroup(items, seqs, flat)


def _regroup(items, seqs, flat) -> Scores:
    logp = [[] for _ in items]
    n = [[] for _ in items]
    for (i, _, _, c), value in zip(seqs, flat):
        logp[i].append(value)
        n[i].append(len(c))
    return Scores(logp, n)
