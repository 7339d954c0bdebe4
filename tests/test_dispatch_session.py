"""attach(): switching and restoring, errors, and the observer/modifier call points."""

import pytest
import torch

import attnlab
import tiny
from helpers import CountCalls, ScaleHead


def test_restores_implementation_even_on_exception():
    model = tiny.llama()
    with pytest.raises(KeyError):
        with attnlab.attach(model, kernel="eager"):
            assert model.config._attn_implementation == "attnlab"
            raise KeyError("boom")
    assert model.config._attn_implementation == "sdpa"
    ids, mask = tiny.token_batch(batch=1, length=8)
    model(input_ids=ids)  # still runs stock


def test_restores_a_non_default_implementation():
    model = tiny.llama()
    model.set_attn_implementation("eager")
    with attnlab.attach(model):
        pass
    assert model.config._attn_implementation == "eager"


def test_nested_attach_on_same_model_is_refused_and_leaves_outer_intact():
    model = tiny.llama()
    ids, _ = tiny.token_batch(batch=1, length=8)
    with attnlab.attach(model, kernel="eager") as outer:
        with pytest.raises(RuntimeError, match="already attached"):
            with attnlab.attach(model):
                pass
        assert model.config._attn_implementation == "attnlab"
        with torch.no_grad():
            model(input_ids=ids)
        assert outer.calls == model.config.num_hidden_layers
    assert model.config._attn_implementation == "sdpa"


def test_two_models_attached_at_once_keep_their_own_sessions():
    a, b = tiny.llama(), tiny.qwen2()
    ids, _ = tiny.token_batch(batch=1, length=8)
    with attnlab.attach(a, kernel="eager") as sa, attnlab.attach(b, kernel="sdpa") as sb, torch.no_grad():
        a(input_ids=ids)
        b(input_ids=ids)
        a(input_ids=ids)
    assert (sa.calls, sb.calls) == (2 * a.config.num_hidden_layers, b.config.num_hidden_layers)


def test_unknown_kernel_lists_valid_ones():
    model = tiny.llama()
    with pytest.raises(ValueError, match="valid kernels: .*eager.*sdpa"):
        with attnlab.attach(model, kernel="nope"):
            pass
    assert model.config._attn_implementation == "sdpa"


def test_unknown_kernel_parameter_is_an_error():
    with pytest.raises(ValueError, match="no parameter"):
        with attnlab.attach(tiny.llama(), kernel="eager", window=3):
            pass


def test_probability_hooks_need_a_kernel_that_exposes_them():
    class NeedsProbs:
        def on_probs(self, call, q_start, probs):
            pass

    with pytest.raises(ValueError, match="does not expose"):
        with attnlab.attach(tiny.llama(), kernel="sdpa", observe=[NeedsProbs()]):
            pass


def test_counting_observer_sees_every_layer():
    model = tiny.gemma3()
    counter = CountCalls()
    ids, _ = tiny.token_batch(batch=1, length=10)
    with attnlab.attach(model, observe=[counter]), torch.no_grad():
        model(input_ids=ids)
    assert counter.per_layer == {0: 1, 1: 1, 2: 1}


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_scale_one_head_modifier(kernel):
    model = tiny.llama()
    ids, mask = tiny.token_batch(batch=2, length=12)
    seen = {}

    class Capture:
        def on_output(self, call, output):
            seen[call.layer] = output.clone()

    with torch.no_grad():
        base = model(input_ids=ids).logits
        with attnlab.attach(model, kernel=kernel, modify=[ScaleHead(1, 2, 0.0)], observe=[Capture()]):
            steered = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    assert float(seen[1][:, :, 2].abs().max()) == 0.0
    assert float(seen[1][:, :, 1].abs().max()) > 0.0
    assert float((steered - base).abs().max()) > 1e-4
    assert torch.equal(after, base)


def test_probs_modifier_changes_eager_attention():
    class Uniformise:
        def probs(self, call, q_start, probs):
            visible = call.visible(q_start, q_start + probs.shape[2]).float()
            return (visible / visible.sum(-1, keepdim=True)).expand_as(probs)

    model = tiny.llama()
    ids, _ = tiny.token_batch(batch=1, length=10)
    with torch.no_grad():
        base = model(input_ids=ids).logits
        with attnlab.attach(model, kernel="eager", modify=[Uniformise()]):
            flat = model(input_ids=ids).logits
    assert float((flat - base).abs().max()) > 1e-4
