"""attnlab.tune: head edits (lofit, gates) and head_lora against explicit references, with gradients."""

from __future__ import annotations

import copy

import pytest
import torch

import tiny
from attnlab import attach
from attnlab.tune.edits import HeadEdit
from attnlab.tune.gates import HardConcrete
from attnlab.tune.methods import build
from attnlab.tune.sites import all_heads, head_budget, head_sites

HEADS = [("decoder", 0, 1), ("decoder", 2, 0), ("decoder", 2, 3)]


def _batch(pad: bool = True):
    ids = torch.randint(5, 120, (2, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    if pad:
        mask[1, :3] = 0  # left padding in row 1
    return ids, mask


def _randomize(edit: HeadEdit, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in edit.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _explicit(model, edit: HeadEdit, ids, mask):
    """Reference: the same edit written out on o_proj's input (the heads' concatenated outputs)."""
    H = model.config.num_attention_heads
    Dv = model.config.hidden_size // H
    handles = []
    for layer, attn in enumerate(model.model.layers):
        def pre(module, args, layer=layer):
            z = list(args[0].view(*args[0].shape[:2], H, Dv).unbind(2))  # H x [B, T, Dv]
            for i, (_, l, h) in enumerate(edit.heads):
                if l == layer:
                    a = edit.scale[i] if edit.scale is not None else 0.0
                    v = edit.offset[i] if edit.offset is not None else 0.0
                    z[h] = (1 + a) * z[h] + v
            return (torch.stack(z, 2).reshape(args[0].shape),)
        handles.append(attn.self_attn.o_proj.register_forward_pre_hook(pre))
    try:
        return model(input_ids=ids, attention_mask=mask).logits
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_lofit_edit_matches_explicit_outputs_and_gradients(kernel):
    model = tiny.llama()
    edit = HeadEdit(HEADS, head_sites(model), scale=True, offset=True)
    _randomize(edit)
    ids, mask = _batch()
    with attach(model, kernel=kernel, modify=[edit]):
        got = model(input_ids=ids, attention_mask=mask).logits
    (got * mask[..., None]).square().sum().backward()
    grads = [p.grad.clone() for p in edit.parameters()]
    edit.zero_grad()
    ref = _explicit(model, edit, ids, mask)
    (ref * mask[..., None]).square().sum().backward()
    keep = mask.bool()
    assert (got - ref)[keep].abs().max() < 1e-5
    for g, p in zip(grads, edit.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-4, rtol=1e-4)
        assert g.abs().sum() > 0  # the edit really receives gradient


def test_untouched_heads_and_identity_at_init():
    model = tiny.llama()
    ids, mask = _batch()
    ref = model(input_ids=ids, attention_mask=mask).logits
    edit = HeadEdit(HEADS, head_sites(model), scale=True, offset=True)
    with attach(model, modify=[edit]):
        same = model(input_ids=ids, attention_mask=mask).logits
    assert (same - ref)[mask.bool()].abs().max() < 1e-5


class _Call:
    def __init__(self, layer):
        from attnlab.core.call import Site

        self.site, self.layer = Site("decoder", "self", layer), layer


def test_head_edit_gradcheck_float64():
    sites = {("decoder", 0): (4, 2, 3), ("decoder", 1): (4, 2, 3)}
    edit = HeadEdit([("decoder", 0, 1), ("decoder", 0, 3)], sites, scale=True, offset=True,
                    vector_scale=True, gates=None).double()
    _randomize(edit)
    out = torch.randn(2, 5, 4, 3, dtype=torch.float64, requires_grad=True)  # [B, Q, H, Dv]

    class Wrap(torch.nn.Module):  # functional_call swaps in the checked tensors as the edit's parameters
        def __init__(self):
            super().__init__()
            self.e = edit

        def forward(self, o):
            return self.e.output(_Call(0), o)

    def fn(o, a, v):
        return torch.func.functional_call(Wrap(), {"e.scale": a, "e.offset": v}, (o,))
    assert torch.autograd.gradcheck(fn, (out, edit.scale.detach().clone().requires_grad_(),
                                         edit.offset.detach().clone().requires_grad_()))
    assert torch.equal(edit.output(_Call(1), out), out)  # a layer without chosen heads is untouched


def test_hard_concrete_gates():
    torch.manual_seed(0)
    g = HardConcrete((6, 2), init_open=0.9)
    g.train()
    sample = g()
    assert sample.shape == (6, 2) and (sample >= 0).all() and (sample <= 1).all()
    g.eval()
    assert torch.equal(g(), g())  # deterministic at evaluation
    open_l0 = float(g.l0().detach())
    with torch.no_grad():
        g.log_alpha[:3] = -10.0
    assert float(g.l0()) < open_l0 - 2.5
    assert g.open_mask()[:3].sum() == 0 and g.open_mask()[3:].all()


def test_gated_edit_closed_gates_are_identity():
    model = tiny.llama()
    adapter = build("gates", model, head_sites(model), all_heads(head_sites(model)))
    _randomize(adapter.module)
    with torch.no_grad():
        adapter.module.gates.log_alpha.fill_(-20.0)
    adapter.module.eval()
    ids, mask = _batch()
    ref = model(input_ids=ids, attention_mask=mask).logits
    with attach(model, modify=[adapter]):
        got = model(input_ids=ids, attention_mask=mask).logits
    assert (got - ref)[mask.bool()].abs().max() < 1e-5


def test_head_lora_matches_merged_weights_gqa():
    model = tiny.llama()  # 4 query heads, 2 KV heads
    sites = head_sites(model)
    adapter = build("head_lora", model, sites, [("decoder", 1, 3)], rank=2)
    _randomize(adapter.module)
    ids, mask = _batch()
    before = model(input_ids=ids, attention_mask=mask).logits
    with attach(model, modify=[adapter]):
        got = model(input_ids=ids, attention_mask=mask).logits
    merged = copy.deepcopy(model)
    lora = adapter.module
    attn = merged.model.layers[1].self_attn
    with torch.no_grad():
        for t in "qkvo":
            key, proj = f"1_{t}", getattr(attn, f"{t}_proj")
            idx = getattr(lora, f"idx_{key}")
            d = lora.B[key] @ lora.A[key] * lora.scaling  # [out, in] on chosen rows / columns
            if t == "o":
                proj.weight[:, idx] += d
            else:
                proj.weight[idx] += d
    assert lora.A["1_k"].shape[1] == 64 and len(lora.idx_1_k) == 16  # KV head 3 // 2 = 1 only
    ref = merged(input_ids=ids, attention_mask=mask).logits
    keep = mask.bool()
    assert (got - ref)[keep].abs().max() < 1e-5
    assert (got - before)[keep].abs().max() > 1e-3
    after = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(after, before)  # hooks removed on exit


@pytest.mark.parametrize("kind,targets", [("lora", "q,v"), ("lora", "q,k,v,o"), ("ia3", "")])
def test_peft_baselines_install_and_restore(kind, targets):
    model = tiny.llama()
    types = {n: type(m) for n, m in model.named_modules()}
    ids, mask = _batch()
    before = model(input_ids=ids, attention_mask=mask).logits
    adapter = build(kind, model, head_sites(model), [], targets=targets or "q,v")
    assert {n: type(m) for n, m in model.named_modules()} == types  # build leaves the model as it was
    with attach(model, modify=[adapter]):
        assert any(type(m).__module__.startswith("peft.") for m in model.modules())  # PEFT layers are in
        same = model(input_ids=ids, attention_mask=mask).logits
    assert (same - before).abs().max() < 1e-5  # identity at init
    assert {n: type(m) for n, m in model.named_modules()} == types
    assert not hasattr(model, "peft_config")
    assert adapter.num_trainable() > 0 and all("base_layer" not in k for k in adapter.trainable_state())


def test_bf16_edit_runs_and_tracks_fp32():
    model = tiny.llama()
    edit = HeadEdit(HEADS, head_sites(model), scale=True, offset=True)
    _randomize(edit)
    ids, mask = _batch()
    with attach(model, modify=[edit]):
        ref = model(input_ids=ids, attention_mask=mask).logits
    model16 = copy.deepcopy(model).to(torch.bfloat16)
    with attach(model16, modify=[edit]):
        got = model16(input_ids=ids, attention_mask=mask).logits
    got.float().sum().backward()
    assert got.dtype == torch.bfloat16 and edit.offset.grad is not None
    assert (got.float() - ref)[mask.bool()].abs().max() < 0.1 * ref.abs().max()


def test_head_budget():
    from attnlab.errors import OptionError

    assert head_budget("3%", 270) == 8 and head_budget("10%", 270) == 27 and head_budget(12, 270) == 12
    assert head_budget("0.1%", 12) == 1
    for bad in ("x", "300", "-1"):
        with pytest.raises(OptionError):
            head_budget(bad, 270)
