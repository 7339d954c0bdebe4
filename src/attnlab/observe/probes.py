"""Short probes that score each head's role: induction, previous-token, retrieval.

induction_scores: random tokens repeated twice (length T each); over the queries i of the
  second copy, `induction` = mean p_i(i - T + 1) (the token that followed the current
  token last time) and `prev_token_probe` = mean p_i(i - 1).
retrieval_scores: the Retrieval Head paper's score. A needle sentence ("The secret number
  of Horatio is 4817.") sits in real Shakespeare text (`attnlab.bench.needles`); the model
  completes the question by greedy decoding. Each generated token that equals a token of
  the needle's number is a copy event; a head hits when, at the step that produced the
  token, its most-attended key is a needle position holding that same token.
  retrieval = hits / events. `retrieval_events` says how many events were observed.
  The prompt but its last token is prefilled with the model's own attention; only the
  decode steps (one query each) go through the observed eager kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class DiagonalProbe:
    """Observer: per (site, head) sums of p_i(i - T + 1) and p_i(i - 1) over i in [T, 2T)
    (self-attention sites only: cross-attention keys have no positions among the queries)."""

    period: int
    induction: dict = field(default_factory=dict)  # site -> [H] sum
    prev: dict = field(default_factory=dict)  # site -> [H] sum
    count: dict = field(default_factory=dict)  # site -> number of (row, query) terms

    def on_probs(self, call, q_start: int, probs: torch.Tensor) -> None:  # probs [B, H, q, K]
        if call.phase != "prefill" or not call.positional:
            return
        b, h, q, _ = probs.shape
        i = torch.arange(q_start, q_start + q)
        keep = (i >= self.period) & (i < 2 * self.period)
        if not bool(keep.any()):
            return
        rows = keep.nonzero().squeeze(1)  # block rows in the second copy
        ind = probs[:, :, rows, i[rows] - self.period + 1]  # [B, H, r]
        prev = probs[:, :, rows, i[rows] - 1]
        site = call.site
        self.induction[site] = self.induction.get(site, 0) + ind.sum((0, 2)).double()
        self.prev[site] = self.prev.get(site, 0) + prev.sum((0, 2)).double()
        self.count[site] = self.count.get(site, 0) + b * len(rows)


def _random_tokens(tokenizer, length: int, batch: int, seed: int) -> torch.Tensor:
    """[batch, 2 * length]: random non-special token ids, each row its first half twice."""
    g = torch.Generator().manual_seed(seed)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    pool = torch.arange(len(tokenizer))
    pool = pool[~torch.isin(pool, special)]
    half = pool[torch.randint(len(pool), (batch, length), generator=g)]
    return torch.cat([half, half], dim=1)


def induction_scores(model, tokenizer, length: int = 64, batch: int = 4, seed: int = 0, block_size: int = 256):
    """DataFrame[stack, layer, head, induction, prev_token_probe] from random tokens repeated twice."""
    import pandas as pd

    from ..core.session import attach
    from ..models import trunk

    ids = _random_tokens(tokenizer, length, batch, seed)  # [B, 2T]
    probe = DiagonalProbe(period=length)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with attach(model, kernel="eager", observe=[probe], block_size=block_size), torch.no_grad():
        trunk(model, inputs)(**inputs)
    rows = []
    for site in sorted(probe.count):
        n = probe.count[site]
        for head, (ind, prev) in enumerate(zip(probe.induction[site].tolist(), probe.prev[site].tolist())):
            rows.append({"stack": site.name, "layer": site.layer, "head": head, "induction": ind / n,
                         "prev_token_probe": prev / n})
    return pd.DataFrame(rows)


@dataclass
class ArgmaxRecorder:
    """Observer: each head's most-attended key for the query that predicts the next token.

    steps[site] is a list, one [H] long tensor per generated token: one per decode call
    (and the last query of a prefill, if one is observed).
    """

    steps: dict = field(default_factory=dict)

    def on_probs(self, call, q_start: int, probs: torch.Tensor) -> None:  # probs [1, H, q, K]
        if call.phase == "prefill" and q_start + probs.shape[2] < call.q_len:
            return
        top = probs[0, :, -1].argmax(-1)  # [H]
        self.steps.setdefault(call.site, []).append(top)


def _needle_positions(tokenizer, case) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt ids [T] and the positions of the tokens that spell the needle's number."""
    enc = tokenizer(case.prompt, return_offsets_mapping=True)
    num_start = case.needle_start + case.needle.rindex(case.answer)
    num_end = num_start + len(case.answer)
    pos = [i for i, (s, e) in enumerate(enc["offset_mapping"])
           if s < num_end and e > num_start and case.prompt[s:e].strip()]
    return torch.tensor(enc["input_ids"]), torch.tensor(pos, dtype=torch.long)


def _prefill_cache(model, ids: torch.Tensor):
    """KV cache of `ids` [1, T] from the model's own attention (only decode steps are observed)."""
    from transformers import DynamicCache

    from ..models import cache_kwarg

    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, logits_to_keep=1,
              **{cache_kwarg(model): cache})
    return cache


def _score_case(model, tokenizer, case):
    """(hits [L, H], events, generated text, sites [L]) of one needle case."""
    from ..core.session import attach
    from ..models import cache_kwarg

    ids, needle_pos = _needle_positions(tokenizer, case)
    cache = _prefill_cache(model, ids[None, :-1])  # the prompt but its last token, stock attention
    rec = ArgmaxRecorder()
    with attach(model, kernel="eager", observe=[rec]), torch.no_grad():
        out = model.generate(ids[None], attention_mask=torch.ones_like(ids)[None], **{cache_kwarg(model): cache},
                             do_sample=False, max_new_tokens=len(needle_pos) + 1,
                             pad_token_id=tokenizer.eos_token_id)
    new = out[0, ids.shape[0]:]  # [n_new]
    sites = sorted(rec.steps)
    tops = torch.stack([torch.stack(rec.steps[site][:len(new)]) for site in sites])  # [L, n_new, H]
    hits = torch.zeros(tops.shape[0], tops.shape[2])
    events = 0
    needle_ids = ids[needle_pos]
    for t, tok in enumerate(new.tolist()):
        sources = needle_pos[needle_ids == tok]  # needle positions holding this token
        if len(sources) == 0 or t >= tops.shape[1]:
            continue
        events += 1
        hits += torch.isin(tops[:, t], sources).float()
    return hits, events, tokenizer.decode(new), sites


def retrieval_scores(model, tokenizer, n_needles: int = 6, length: int = 1024, seed: int = 0,
                     play: str = "hamlet", progress=None):
    """DataFrame[stack, layer, head, retrieval, retrieval_events]: the Retrieval Head score.

    n_needles cases of about `length` tokens, needle depths evenly spread over (0, 1),
    each with its own name, number and haystack offset (`seed`). df.attrs holds
    "cases" (depth, answer, generated text, correct) per needle.
    progress: optional callback(done, total) after each case.
    """
    import pandas as pd

    from ..bench.corpora import shakespeare
    from ..bench.needles import is_correct, make_cases

    depths = [(k + 0.5) / n_needles for k in range(n_needles)]
    cases = make_cases(tokenizer, shakespeare(play), [length], depths, seed=seed)
    total, events, info = None, 0, []
    for k, case in enumerate(cases):
        hits, n, text, sites = _score_case(model, tokenizer, case)
        total = hits if total is None else total + hits
        events += n
        info.append({"depth": case.depth, "answer": case.answer, "generated": text,
                     "correct": is_correct(case, text), "events": n})
        if progress:
            progress(k + 1, len(cases))
    rows = [{"stack": site.name, "layer": site.layer, "head": head,
             "retrieval": float(total[k, head]) / max(events, 1), "retrieval_events": events}
            for k, site in enumerate(sites) for head in range(total.shape[1])]
    df = pd.DataFrame(rows)
    df.attrs["cases"] = info
    return df
