"""What one benchmark cell measures: prefill time, perplexity, KL to dense, decode speed.

All functions take a loaded causal LM and token ids [1, N] and run under an attach()
the caller opened. The prefill runs the decoder only (hidden states + KV cache); logits
are computed afterwards in position chunks, so an 8192 x vocab logit matrix never exists
and peak memory reflects attention, not the vocabulary.
"""

from __future__ import annotations

import time

import torch

LOGIT_CHUNK = 1024  # positions per lm_head chunk


class AttentionTimer:
    """Observer that sums the wall time spent inside attention calls (seconds), per phase."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._start = 0.0

    def on_call(self, call) -> None:
        self._start = time.perf_counter()

    def on_output(self, call, output) -> None:
        self.seconds[call.phase] = self.seconds.get(call.phase, 0.0) + time.perf_counter() - self._start

    def reset(self) -> None:
        self.seconds = {}


def prefill(model, ids: torch.Tensor):
    """One decoder forward over ids [1, N]; returns (hidden [1, N, D], KV cache, seconds)."""
    from ..models import returned_cache

    start = time.perf_counter()
    with torch.inference_mode():
        out = model.get_decoder()(input_ids=ids, use_cache=True)
    return out.last_hidden_state, returned_cache(out), time.perf_counter() - start


def logprobs(model, hidden: torch.Tensor) -> torch.Tensor:
    """Log-softmax of the model's next-token logits for hidden [P, D] -> [P, V] fp32."""
    with torch.inference_mode():
        logits = model.get_output_embeddings()(hidden).float()  # [P, V]
        cap = getattr(model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return torch.log_softmax(logits, dim=-1)


def nll_sum(model, hidden: torch.Tensor, ids: torch.Tensor, first: int) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of tokens first+1..N-1 given hidden [1, N, D]."""
    total, count = 0.0, 0
    n = ids.shape[1]
    for start in range(first, n - 1, LOGIT_CHUNK):
        stop = min(start + LOGIT_CHUNK, n - 1)
        lp = logprobs(model, hidden[0, start:stop])  # [P, V]
        target = ids[0, start + 1:stop + 1]  # [P]
        total -= float(lp.gather(1, target[:, None]).sum())
        count += stop - start
    return total, count


def kl_positions(n_tokens: int, first: int, count: int) -> list[int]:
    """`count` positions spread evenly over [first, n_tokens - 1) (where KL is measured)."""
    count = max(1, min(count, n_tokens - 1 - first))
    step = (n_tokens - 1 - first) / count
    return [first + int(i * step) for i in range(count)]


def mean_kl(dense_lp: torch.Tensor, lp: torch.Tensor) -> float:
    """Mean over positions of KL(dense || kernel) in nats; both [P, V] log-probabilities."""
    return float((dense_lp.exp() * (dense_lp - lp)).sum(-1).mean())


def decode_speed(model, hidden: torch.Tensor, cache, steps: int) -> float:
    """Greedy decode `steps` tokens after a prefill; tokens per second."""
    if steps <= 0:
        return float("nan")
    from ..models import cache_kwarg, returned_cache

    token = logprobs(model, hidden[0, -1:]).argmax(-1)[None]  # [1, 1]
    key = cache_kwarg(model)
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(steps):
            out = model(input_ids=token, **{key: cache}, use_cache=True)
            cache = returned_cache(out)
            token = out.logits[:, -1:].argmax(-1)  # [1, 1]
    return steps / (time.perf_counter() - start)


def generate_answer(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Greedy completion of `prompt` (the needle test), decoded text of the new tokens."""
    enc = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def rss_mb() -> float:
    """Current resident set size of this process, MB."""
    import os

    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux VmHWM) so the next peak is the work's own.

    Returns False where the kernel does not allow it (then the peak includes model loading).
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process since start or the last reset, MB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
