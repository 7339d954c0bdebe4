"""Score multiple-choice items by the log-likelihood of each choice given the prompt.

Each prompt runs once (left-padded into a batch, position ids counted from each row's
first real token, so padding changes nothing); its KV cache is repeated for each choice
and the choices (tokenized apart from the prompt, so the prompt tokens are the same for
every choice) run as one extension of the cache. Modifiers act on both passes.
On an encoder-decoder (T5, BART) the encoder reads the prompt and the decoder scores the
choice, teacher-forced from its decoder_start_token_id; modifiers address its heads by
stack (heads=decoder.cross:0:1, layers=encoder:0-5).
For each pair we keep the summed log-probability of the choice tokens and their count:
'sum' normalisation picks the choice with the highest total log-likelihood, 'mean' the
highest per-token average.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import OptionError

NORMS = ("sum", "mean")


@dataclass
class Scores:
    """Per item, per choice: logp [sum of log-probabilities], n [choice tokens]."""

    logp: list[list[float]]
    n: list[list[int]]

    def predictions(self, norm: str = "sum") -> list[int]:
        if norm not in NORMS:
            raise OptionError(f"unknown normalisation {norm!r}; valid: {', '.join(NORMS)}")
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


def _encode(tokenizer, items):
    """Per item: prompt ids and one list of ids per choice (tokenized apart from the prompt)."""
    out = []
    for it in items:
        prompt = tokenizer(it.prompt, add_special_tokens=False)["input_ids"]
        out.append((prompt, [tokenizer(" " + c, add_special_tokens=False)["input_ids"] for c in it.choices]))
    return out


def _left_pad(rows, pad_id: int):
    """ids [B, T] left-padded, attention mask [B, T]."""
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, T - len(row):] = torch.tensor(row)
        mask[r, T - len(row):] = 1
    return ids, mask


def _prepare(modifiers, tokenizer, items, rows, Tp: int, T: int) -> None:
    """Give span-aware modifiers (emphasize) each batch row's text and character offsets [B, T, 2].

    rows: the item of each batch row; prompts are left-padded to Tp tokens, T >= Tp is the
    full key length of the pass (prompt + choices).
    """
    users = [m for m in modifiers if callable(getattr(m, "prepare", None))]
    if not users:
        return
    offsets = torch.zeros(len(rows), T, 2, dtype=torch.long)
    for r, i in enumerate(rows):
        offs = tokenizer(items[i].prompt, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        offsets[r, Tp - len(offs):Tp] = torch.tensor(offs, dtype=torch.long).view(-1, 2)
    for m in users:
        m.prepare(tokenizer, [items[i].prompt for i in rows], offsets)


def _kernel_spec(kernel: str) -> tuple[str, dict]:
    """'eager:block_size=256' -> ('eager', {'block_size': 256}), validated."""
    from ..kernels import parse_spec

    return parse_spec(kernel)


def _score_batch(model, tokenizer, items, enc, modifiers, pad_id) -> list[list[float]]:
    """Summed choice log-probabilities of a batch of items: the prompts run once (left-padded),
    their KV cache is repeated per choice, then all choices run as one right-padded extension."""
    from transformers import DynamicCache

    from ..models import cache_kwarg

    p_ids, p_mask = _left_pad([p for p, _ in enc], pad_id)  # [n, Tp]
    owner = [i for i, (_, cs) in enumerate(enc) for _ in cs]  # item of each choice row
    choices = [c for _, cs in enc for c in cs]
    Tp, Tc = p_ids.shape[1], max(len(c) for c in choices)
    _prepare(modifiers, tokenizer, items, list(range(len(enc))), Tp, Tp)
    cache = DynamicCache(config=model.config)
    first = model(input_ids=p_ids, attention_mask=p_mask, position_ids=(p_mask.cumsum(-1) - 1).clamp_min(0),
                  **{cache_kwarg(model): cache}, use_cache=True, logits_to_keep=1).logits[:, -1]  # [n, V]
    cache.batch_select_indices(torch.tensor(owner))
    c_ids = torch.full((len(choices), Tc), pad_id, dtype=torch.long)
    c_mask = torch.zeros(len(choices), Tc, dtype=torch.long)
    for r, c in enumerate(choices):
        c_ids[r, :len(c)], c_mask[r, :len(c)] = torch.tensor(c), 1
    rows = torch.tensor(owner)
    _prepare(modifiers, tokenizer, items, owner, Tp, Tp + Tc)
    start = p_mask.sum(-1)[rows, None]  # [R, 1] real prompt length = first choice position
    pos = start + torch.arange(Tc)[None]
    logits = model(input_ids=c_ids, attention_mask=torch.cat([p_mask[rows], c_mask], 1), position_ids=pos,
                   **{cache_kwarg(model): cache}, use_cache=True).logits  # [R, Tc, V]
    logp = torch.log_softmax(torch.cat([first[rows, None], logits[:, :-1]], 1).float(), -1)  # predicts c_ids
    got = logp.gather(-1, c_ids[..., None])[..., 0] * c_mask  # [R, Tc]
    flat, out = got.sum(-1).tolist(), [[] for _ in enc]
    for i, v in zip(owner, flat):
        out[i].append(v)
    return out


def _score_batch_seq2seq(model, enc, pad_id) -> list[list[float]]:
    """Summed choice log-probabilities on an encoder-decoder: the encoder reads the prompt
    (right-padded, one row per choice), the decoder is teacher-forced on the choice
    (decoder_start_token_id, then the choice but its last token) and scores every token."""
    start = model.config.decoder_start_token_id
    start = pad_id if start is None else start
    owner = [i for i, (_, cs) in enumerate(enc) for _ in cs]
    prompts, choices = [enc[i][0] for i in owner], [c for _, cs in enc for c in cs]
    Tp, Tc = max(len(p) for p in prompts), max(len(c) for c in choices)
    p_ids = torch.full((len(owner), Tp), pad_id, dtype=torch.long)
    p_mask = torch.zeros(len(owner), Tp, dtype=torch.long)
    c_ids = torch.full((len(owner), Tc), pad_id, dtype=torch.long)
    c_mask = torch.zeros(len(owner), Tc, dtype=torch.long)
    for r, (p, c) in enumerate(zip(prompts, choices)):
        p_ids[r, :len(p)], p_mask[r, :len(p)] = torch.tensor(p), 1
        c_ids[r, :len(c)], c_mask[r, :len(c)] = torch.tensor(c), 1
    dec = torch.cat([torch.full((len(owner), 1), start, dtype=torch.long), c_ids[:, :-1]], 1)  # [R, Tc]
    logits = model(input_ids=p_ids, attention_mask=p_mask, decoder_input_ids=dec, decoder_attention_mask=c_mask,
                   use_cache=False).logits  # [R, Tc, V]
    got = torch.log_softmax(logits.float(), -1).gather(-1, c_ids[..., None])[..., 0] * c_mask  # [R, Tc]
    out = [[] for _ in enc]
    for i, v in zip(owner, got.sum(-1).tolist()):
        out[i].append(v)
    return out


def score(model, tokenizer, items, modify=(), kernel: str = "eager", batch_size: int = 16, progress=None) -> Scores:
    """Log-likelihood of every choice of every item, under attach(kernel, modify).

    kernel: a kernel name or spec with parameters, e.g. 'eager:block_size=256'.

    batch_size: items per forward (each item's choices ride along on its prompt's cache).
    progress: optional callable(n_done_items, n_total) called after each batch.
    """
    from ..core.session import attach

    from ..models import loaded_kind

    name, params = _kernel_spec(kernel)
    kind = loaded_kind(model)
    if kind == "encoder":
        raise OptionError(f"scoring choices needs a language model; {type(model).__name__} is an encoder "
                          "(no next-token logits)")
    seq2seq = kind == "encoder-decoder"
    if seq2seq and any(callable(getattr(m, "prepare", None)) for m in modify):
        raise OptionError("span-aware modifiers (emphasize) need a decoder-only LM: on an encoder-decoder "
                          "the prompt is in the encoder and the choices in the decoder")
    enc = _encode(tokenizer, items)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    logp = []
    with torch.inference_mode(), attach(model, kernel=name, modify=modify, **params):
        for b in range(0, len(items), batch_size):
            if seq2seq:
                logp += _score_batch_seq2seq(model, enc[b:b + batch_size], pad_id)
                continue
            logp += _score_batch(model, tokenizer, items[b:b + batch_size], enc[b:b + batch_size], modify, pad_id)
            if progress is not None:
                progress(min(b + batch_size, len(items)), len(items))
    return Scores(logp, [[len(c) for c in cs] for _, cs in enc])
