"""The modifier and observer protocols, and how one attention call runs them.

A modifier changes attention for chosen heads; an observer measures it. Both are plain
objects with any of these optional methods (shapes as in `attnlab.core.call`):

  modifier.scores(call, q_start, scores) -> scores   scores [B, H, q, K], pre-softmax logits
  modifier.probs(call, q_start, probs)   -> probs    probs  [B, H, q, K], fp32
  modifier.output(call, output)          -> output   output [B, Q, H, Dv]
  observer.on_call(call)                             before the kernel runs
  observer.on_probs(call, q_start, probs)            probs  [B, H, q, K], after modifiers
  observer.on_output(call, output)                   output [B, Q, H, Dv], after modifiers

Queries arrive in blocks: `q_start` is the index of the block's first query, so a whole
n x n map is never needed at once. Scores and probabilities exist only in kernels that
compute them (`Kernel.exposes_probs`); attach() refuses a kernel that cannot serve the
hooks it is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .call import AttnCall

PROB_METHODS = ("scores", "probs", "on_probs")


def _has(obj, name: str) -> bool:
    return callable(getattr(obj, name, None))


@dataclass(frozen=True)
class Hooks:
    """The modifiers and observers of one attach(), applied in the order given."""

    modifiers: tuple = ()
    observers: tuple = ()

    def needing_probs(self) -> list:
        """The hooks that need scores or probabilities (a kernel must expose them)."""
        return [h for h in self.modifiers + self.observers if any(_has(h, m) for m in PROB_METHODS)]

    def on_call(self, call: AttnCall) -> None:
        for obs in self.observers:
            if _has(obs, "on_call"):
                obs.on_call(call)

    def scores(self, call: AttnCall, q_start: int, scores: torch.Tensor) -> torch.Tensor:
        for mod in self.modifiers:
            if _has(mod, "scores"):
                scores = mod.scores(call, q_start, scores)
        return scores

    def probs(self, call: AttnCall, q_start: int, probs: torch.Tensor) -> torch.Tensor:
        for mod in self.modifiers:
            if _has(mod, "probs"):
                probs = mod.probs(call, q_start, probs)
        for obs in self.observers:
            if _has(obs, "on_probs"):
                obs.on_probs(call, q_start, probs)
        return probs

    def output(self, call: AttnCall, output: torch.Tensor) -> torch.Tensor:
        for mod in self.modifiers:
            if _has(mod, "output"):
                output = mod.output(call, output)
        for obs in self.observers:
            if _has(obs, "on_output"):
                obs.on_output(call, output)
        return output

    def run_probs(self, call: AttnCall, q_start: int, scores: torch.Tensor, k_start: int = 0) -> torch.Tensor:
        """THE hook protocol of one query block: score modifiers -> softmax (with the call's
        sink column) -> probability modifiers -> observers. Every kernel that forms
        probabilities calls this, so no kernel can forget a hook.

        scores [B, H, q, K'] fp32 masked logits (`core.scores.logits`); hooks see the
        block on all keys, so a kernel passing a key sub-range (k_start > 0 or K' < K) may
        only do so when there are no hooks on scores or probabilities.
        """
        from .scores import probs as softmax

        if k_start or scores.shape[-1] != call.k_len:
            if self.needing_probs():
                raise ValueError("run_probs: hooks need blocks on all keys")
            return softmax(call, scores)
        return self.probs(call, q_start, softmax(call, self.scores(call, q_start, scores)))

    @property
    def touches_scores(self) -> bool:
        return any(_has(m, "scores") or _has(m, "probs") for m in self.modifiers)

    @property
    def empty(self) -> bool:
        return not self.modifiers and not self.observers
