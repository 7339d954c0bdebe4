"""Shared test utilities: tolerant comparison of model outputs on real (non-pad) positions."""

from __future__ import annotations

import torch


def max_diff(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor | None = None) -> float:
    """Max |a - b| over positions where keep [B, T] is true (padding rows are meaningless)."""
    d = (a - b).abs()
    if keep is not None:
        d = d[keep.bool()]
    return float(d.max())


def layer_diffs(ref, out, keep=None) -> list[float]:
    """Max difference of every hidden state (embeddings + each layer) and of the final output."""
    diffs = [max_diff(a, b, keep) for a, b in zip(ref.hidden_states, out.hidden_states)]
    return diffs + [max_diff(ref[0], out[0], keep)]


class CountCalls:
    """Trivial observer: counts calls per layer and per phase."""

    def __init__(self):
        self.per_layer = {}
        self.phases = {}

    def on_call(self, call):
        self.per_layer[call.layer] = self.per_layer.get(call.layer, 0) + 1
        self.phases[call.phase] = self.phases.get(call.phase, 0) + 1


class ScaleHead:
    """Trivial modifier: multiplies one head's attention output by `factor`."""

    def __init__(self, layer: int, head: int, factor: float):
        self.layer, self.head, self.factor = layer, head, factor

    def output(self, call, output):  # output [B, Q, H, Dv]
        if call.layer != self.layer:
            return output
        output = output.clone()
        output[:, :, self.head] *= self.factor
        return output


def layers_of(result: dict) -> dict:
    """{layer: value} of a per-site result dict of a single-stack model (asserts one stack)."""
    stacks = {site.name for site in result}
    assert len(stacks) <= 1, stacks
    return {site.layer: value for site, value in result.items()}


def save_tiny_llama(folder):
    """A tiny random Llama with the real SmolLM2 tokenizer, saved as a model folder at `folder`."""
    from transformers import AutoTokenizer

    import tiny
    from attnlab.models import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve("smollm2-135m"))
    model = tiny.llama(vocab_size=len(tokenizer), max_position_embeddings=512)
    model.config.architectures = ["LlamaForCausalLM"]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
