"""Steering on models with several stacks: heads are (stack, layer, head), never ambiguous."""

from __future__ import annotations

import pytest
import torch

import archs
import attnlab
from attnlab import steer
from attnlab.steer.heads import format_pairs, select


class Outputs:
    """Observer keeping every site's attention output."""

    def __init__(self):
        self.out = {}

    def on_output(self, call, output):
        self.out[str(call.site)] = output.clone()


def _run(model, inputs, modify=()):
    obs = Outputs()
    with attnlab.attach(model, kernel="eager", modify=list(modify), observe=[obs]), torch.no_grad():
        model(**inputs)
    return obs.out


def test_stack_qualified_text_forms_round_trip():
    h = select(heads="decoder:3:1;encoder:0:0-1;2:5")
    assert h.pairs == {("decoder", 3, 1), ("encoder", 0, 0), ("encoder", 0, 1), (None, 2, 5)}
    assert format_pairs(h.pairs) == "2:5;decoder:3:1;encoder:0:0;encoder:0:1"
    assert select(layers="decoder.cross:0-1;3").layers == {("decoder.cross", 0), ("decoder.cross", 1), (None, 3)}
    with pytest.raises(ValueError, match="stack:layer:head"):
        select(heads="a:b:c:d")


def test_a_short_form_on_two_stacks_is_an_error_not_a_silent_multi_select():
    arch = archs.ARCHS["bart"]
    model = arch.build()
    with pytest.raises(ValueError, match="several attention stacks"):
        _run(model, arch.inputs(), [steer.scale(0.0, layers="0")])


def test_cross_attention_heads_are_steered_alone():
    arch = archs.ARCHS["bart"]
    model, inputs = arch.build(), arch.inputs()
    base = _run(model, inputs)
    got = _run(model, inputs, [steer.scale(0.0, heads="decoder.cross:0:1")])
    for site, out in got.items():
        if site == "decoder.cross:0":
            assert float(out[:, :, 1].abs().max()) == 0.0
            torch.testing.assert_close(out[:, :, [0, 2, 3]], base[site][:, :, [0, 2, 3]])
        elif site in ("encoder:0", "encoder:1", "decoder:0"):  # computed before the edit takes effect
            torch.testing.assert_close(out, base[site], rtol=0, atol=0)
    assert (got["decoder:1"] - base["decoder:1"]).abs().max() > 1e-6  # later layers feel it


def test_position_rules_refuse_cross_attention():
    arch = archs.ARCHS["bart"]
    model = arch.build()
    with pytest.raises(ValueError, match="cross-attention"):
        _run(model, arch.inputs(), [steer.recency(2.0, layers="decoder.cross:0")])
    _run(model, arch.inputs(), [steer.recency(2.0, layers="decoder:0")])  # self-attention: fine
