"""Tiny randomly initialised models of several architectures, for fast parity tests."""

from __future__ import annotations

import torch

VOCAB = 128


def _seeded(build):
    torch.manual_seed(0)
    model = build()
    model.eval()
    return model


def llama(**over):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    cfg.update(over)
    return _seeded(lambda: LlamaForCausalLM(LlamaConfig(**cfg, attn_implementation="sdpa")))


def qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=256,
                      attn_implementation="sdpa")
    return _seeded(lambda: Qwen2ForCausalLM(cfg))


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=256, attn_implementation="sdpa")
    return _seeded(lambda: GPT2LMHeadModel(cfg))


def gemma3(window: int = 8):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=16, sliding_window=window,
                           layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                           max_position_embeddings=256, attn_implementation="sdpa")
    return _seeded(lambda: Gemma3ForCausalLM(cfg))


def bert():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=256, attn_implementation="sdpa")
    return _seeded(lambda: BertModel(cfg, add_pooling_layer=False))


def vit():
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, attn_implementation="sdpa")
    return _seeded(lambda: ViTModel(cfg, add_pooling_layer=False))


def token_batch(batch: int = 2, length: int = 24, pad_left: int = 0, pad_right: int = 0, seed: int = 1):
    """Random ids with an attention mask; row 1 is padded `pad_left` on the left / `pad_right` on the right."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    if batch > 1 and pad_left:
        mask[1, :pad_left] = 0
        ids[1, :pad_left] = 0
    if batch > 1 and pad_right:
        mask[1, length - pad_right:] = 0
        ids[1, length - pad_right:] = 0
    return ids, mask
