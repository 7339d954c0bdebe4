"""A zoo of tiny, randomly initialised Hugging Face models: one builder per architecture.

Every entry of `ARCHS` routes its attention through transformers' `AttentionInterface`
(so `model.set_attn_implementation(name)` swaps the attention function); `UNROUTABLE`
holds architectures whose attention is hard-coded in the modeling file (alibi models).

    from archs import ARCHS
    arch = ARCHS["gemma2"]
    model = arch.build()                  # seeded, .eval(), fp32, sdpa
    out = model(**arch.inputs())          # batch 2, row 1 padded

Importing this module is cheap: each builder imports its transformers classes lazily.
Sequences (20 tokens) are longer than every sliding / local window (6), so windowed
layers really mask something.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

VOCAB = 128
SEQ = 20  # tokens per text sequence (decoder side of encoder-decoders uses DEC_SEQ)
DEC_SEQ = 8
PAD = 4  # how many padding tokens row 1 gets
WINDOW = 6  # sliding / local attention window
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
_SPECIAL = dict(pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)


@dataclass(frozen=True)
class Arch:
    name: str
    make: Callable[[], Any] = field(repr=False)
    feed: Callable[[int, bool], dict] = field(repr=False)
    kind: str  # "decoder" | "encoder" | "encoder-decoder" | "vision" | "audio"
    generates: bool = False
    notes: str = ""

    def build(self):
        """The model: seeded with torch.manual_seed(0), fp32, in eval mode, sdpa attention."""
        torch.manual_seed(0)
        return self.make().float().eval()

    def inputs(self, batch: int = 2, pad: bool = True) -> dict:
        """Model kwargs; with `pad`, row 1 is padded (left for decoders, right for encoders)."""
        return self.feed(batch, pad)


# ----------------------------------------------------------------------------- inputs

def _ids(batch: int, length: int, pad: bool, side: str, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    if pad and batch > 1:
        sl = slice(0, PAD) if side == "left" else slice(length - PAD, length)
        ids[1, sl], mask[1, sl] = PAD_ID, 0
    return ids, mask


def _decoder_inputs(batch: int, pad: bool) -> dict:
    ids, mask = _ids(batch, SEQ, pad, "left")
    return {"input_ids": ids, "attention_mask": mask}


def _encoder_inputs(batch: int, pad: bool) -> dict:
    ids, mask = _ids(batch, SEQ, pad, "right")
    return {"input_ids": ids, "attention_mask": mask}


def _seq2seq_inputs(batch: int, pad: bool) -> dict:
    ids, mask = _ids(batch, SEQ, pad, "right")
    dec, dec_mask = _ids(batch, DEC_SEQ, False, "right", seed=2)
    dec[:, 0] = PAD_ID  # decoder_start_token_id for t5 / bart below
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec, "decoder_attention_mask": dec_mask}


def _pixels(batch: int, size: int = 32):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(3))


def _vision_inputs(batch: int, pad: bool) -> dict:
    return {"pixel_values": _pixels(batch)}


def _clip_inputs(batch: int, pad: bool) -> dict:
    ids, mask = _ids(batch, 16, pad, "right")
    last = mask.sum(1) - 1
    ids[torch.arange(batch), last] = EOS_ID  # CLIP pools the text tower at the (first) eos token
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": _pixels(batch)}


def _whisper_inputs(batch: int, pad: bool) -> dict:
    feats = torch.randn(batch, 16, 32, generator=torch.Generator().manual_seed(4))  # (B, mel, 2*max_source_positions)
    dec, _ = _ids(batch, DEC_SEQ, False, "right", seed=2)
    dec[:, 0] = BOS_ID  # decoder_start_token_id
    return {"input_features": feats, "decoder_input_ids": dec}


# ----------------------------------------------------------------------------- builders

def _dec(**over) -> dict:
    """Config fields shared by the llama-like decoders."""
    cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
               attn_implementation="sdpa", **_SPECIAL)
    cfg.update(over)
    return cfg


def _causal_lm(config_name: str, model_name: str, **over):
    """A builder for `<model_name>(<config_name>(**_dec(**over)))`."""
    def make():
        import transformers
        return getattr(transformers, model_name)(getattr(transformers, config_name)(**_dec(**over)))
    return make


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=256,
                                      attn_implementation="sdpa", **_SPECIAL))


def _gptj():
    from transformers import GPTJConfig, GPTJForCausalLM
    return GPTJForCausalLM(GPTJConfig(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=256,
                                      rotary_dim=8, attn_implementation="sdpa", **_SPECIAL))


def _opt():
    from transformers import OPTConfig, OPTForCausalLM
    return OPTForCausalLM(OPTConfig(vocab_size=VOCAB, hidden_size=64, ffn_dim=128, num_hidden_layers=2,
                                    num_attention_heads=4, word_embed_proj_dim=64, max_position_embeddings=256,
                                    attn_implementation="sdpa", **_SPECIAL))


def _bert():
    from transformers import BertConfig, BertModel
    return BertModel(BertConfig(**_enc_cfg()), add_pooling_layer=False)


def _roberta():
    from transformers import RobertaConfig, RobertaModel
    return RobertaModel(RobertaConfig(**_enc_cfg()), add_pooling_layer=False)


def _enc_cfg() -> dict:
    return dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=256, attn_implementation="sdpa", **_SPECIAL)


def _modernbert():
    from transformers import ModernBertConfig, ModernBertModel
    return ModernBertModel(ModernBertConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        max_position_embeddings=256, local_attention=WINDOW,
        layer_types=["full_attention", "sliding_attention", "full_attention"],
        cls_token_id=BOS_ID, sep_token_id=EOS_ID, attn_implementation="sdpa", **_SPECIAL))


def _vit():
    from transformers import ViTConfig, ViTModel
    return ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, attn_implementation="sdpa"), add_pooling_layer=False)


def _clip():
    from transformers import CLIPConfig, CLIPModel
    tower = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    return CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=VOCAB, max_position_embeddings=32, **tower, **_SPECIAL),
        vision_config=dict(image_size=32, patch_size=8, **tower), projection_dim=32, attn_implementation="sdpa"))


def _t5():
    from transformers import T5Config, T5ForConditionalGeneration
    return T5ForConditionalGeneration(T5Config(
        vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
        decoder_start_token_id=PAD_ID, attn_implementation="sdpa", **_SPECIAL))


def _bart():
    from transformers import BartConfig, BartForConditionalGeneration
    return BartForConditionalGeneration(BartConfig(
        vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=256,
        dropout=0.0, decoder_start_token_id=PAD_ID, forced_eos_token_id=None, attn_implementation="sdpa",
        **_SPECIAL))


def _whisper():
    from transformers import WhisperConfig, WhisperForConditionalGeneration
    return WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=VOCAB, num_mel_bins=16, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=16, max_target_positions=64, decoder_start_token_id=BOS_ID,
        suppress_tokens=None, begin_suppress_tokens=None, attn_implementation="sdpa", **_SPECIAL))


# Unroutable (alibi) models -----------------------------------------------------------

def _bloom():
    from transformers import BloomConfig, BloomForCausalLM
    return BloomForCausalLM(BloomConfig(vocab_size=VOCAB, hidden_size=64, n_layer=2, n_head=4,
                                        attn_implementation="eager", **_SPECIAL))  # sdpa refused


def _mpt():
    from transformers import MptConfig, MptForCausalLM
    return MptForCausalLM(MptConfig(vocab_size=VOCAB, d_model=64, n_heads=4, n_layers=2, expansion_ratio=2,
                                    max_seq_len=256, attn_config=dict(alibi=True), use_cache=True,
                                    attn_implementation="eager", **_SPECIAL))  # sdpa refused


def _falcon():
    from transformers import FalconConfig, FalconForCausalLM
    return FalconForCausalLM(FalconConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_kv_heads=4, alibi=True, multi_query=False,
                                          new_decoder_architecture=False, parallel_attn=False, bias=True,
                                          ffn_hidden_size=128, attn_implementation="sdpa", **_SPECIAL))


# ----------------------------------------------------------------------------- registry

def _decoder(name, make, notes=""):
    return Arch(name, make, _decoder_inputs, "decoder", True, notes)


_SLIDE = dict(sliding_window=WINDOW)
_EAGER = dict(attn_implementation="eager")  # for models with _supports_sdpa = False (softcap / sinks)

ARCHS: dict[str, Arch] = {a.name: a for a in [
    _decoder("llama", _causal_lm("LlamaConfig", "LlamaForCausalLM"), "GQA 4q/2kv, rope"),
    _decoder("mistral", _causal_lm("MistralConfig", "MistralForCausalLM", **_SLIDE),
             f"sliding_window={WINDOW} on every layer"),
    _decoder("mixtral", _causal_lm("MixtralConfig", "MixtralForCausalLM", num_local_experts=4,
                                   num_experts_per_tok=2), "MoE 4 experts, top-2, no sliding window"),
    _decoder("qwen2", _causal_lm("Qwen2Config", "Qwen2ForCausalLM", num_key_value_heads=1), "MQA, qkv bias"),
    _decoder("qwen3", _causal_lm("Qwen3Config", "Qwen3ForCausalLM", head_dim=16), "q/k RMSNorm"),
    _decoder("qwen3_moe", _causal_lm("Qwen3MoeConfig", "Qwen3MoeForCausalLM", head_dim=16,
                                     num_local_experts=4, num_experts_per_tok=2, moe_intermediate_size=32),
             "MoE 4 experts, top-2"),
    _decoder("phi3", _causal_lm("Phi3Config", "Phi3ForCausalLM", num_key_value_heads=4), "fused qkv_proj"),
    _decoder("gemma", _causal_lm("GemmaConfig", "GemmaForCausalLM", head_dim=16, num_key_value_heads=1), "MQA"),
    _decoder("gemma2", _causal_lm("Gemma2Config", "Gemma2ForCausalLM", head_dim=16, attn_logit_softcapping=50.0,
                                  final_logit_softcapping=30.0, query_pre_attn_scalar=16, **_SLIDE, **_EAGER,
                                  layer_types=["sliding_attention", "full_attention"]),
             f"built EAGER (_supports_sdpa=False); `softcap`=50 kwarg; sliding {WINDOW} / full"),
    _decoder("gemma3", _causal_lm("Gemma3TextConfig", "Gemma3ForCausalLM", num_hidden_layers=3, head_dim=16,
                                  num_key_value_heads=1, query_pre_attn_scalar=16, **_SLIDE,
                                  layer_types=["sliding_attention", "sliding_attention", "full_attention"]),
             f"text-only; sliding {WINDOW} x2 + full; q/k norm; dual rope"),
    _decoder("gpt2", _gpt2, "Conv1D c_attn, learned positions, MHA"),
    _decoder("gpt_neox", _causal_lm("GPTNeoXConfig", "GPTNeoXForCausalLM"),
             "fused qkv, partial rotary 0.25; cache reaches the module as `layer_past`"),
    _decoder("gptj", _gptj, "rotary_dim=8 of head_dim 16"),
    _decoder("opt", _opt, "learned positions offset 2; q pre-scaled, scaling=1.0"),
    _decoder("stablelm", _causal_lm("StableLmConfig", "StableLmForCausalLM"), "partial rotary 0.25, layernorm"),
    _decoder("olmo2", _causal_lm("Olmo2Config", "Olmo2ForCausalLM"), "q/k norm over all heads"),
    _decoder("starcoder2", _causal_lm("Starcoder2Config", "Starcoder2ForCausalLM", **_SLIDE),
             f"sliding_window={WINDOW}, layernorm, bias"),
    _decoder("gpt_oss", _causal_lm("GptOssConfig", "GptOssForCausalLM", head_dim=16, num_local_experts=4,
                                   num_experts_per_tok=2, **_SLIDE, **_EAGER,
                                   layer_types=["sliding_attention", "full_attention"],
                                   max_position_embeddings=131072),  # = yarn factor 32 x 4096: no warning
             f"EAGER (sdpa unsupported); attention sinks (`s_aux`), sliding {WINDOW} / full, MoE 4 experts"),
    _decoder("deepseek_v3", _causal_lm("DeepseekV3Config", "DeepseekV3ForCausalLM", num_key_value_heads=4,
                                       moe_intermediate_size=32, n_routed_experts=4, n_shared_experts=1,
                                       num_experts_per_tok=2, n_group=1, topk_group=1, first_k_dense_replace=1,
                                       kv_lora_rank=16, q_lora_rank=32, qk_rope_head_dim=8,
                                       qk_nope_head_dim=16, v_head_dim=12, head_dim=8),
             "MLA: q/k head dim 24, v head dim 12; layer 0 dense, layer 1 MoE"),
    Arch("bert", _bert, _encoder_inputs, "encoder", notes="bidirectional, absolute positions"),
    Arch("roberta", _roberta, _encoder_inputs, "encoder", notes="positions offset by padding_idx"),
    Arch("modernbert", _modernbert, _encoder_inputs, "encoder",
         notes=f"full / local / full layers; local_attention={WINDOW} -> sliding_window kwarg {WINDOW // 2 + 1}"),
    Arch("vit", _vit, _vision_inputs, "vision", notes="32x32 image, 8x8 patches: 16 patches + CLS"),
    Arch("clip", _clip, _clip_inputs, "vision",
         notes="CLIPModel: causal text tower (16 tok, is_causal=True kwarg) + vision tower (17 tok)"),
    Arch("t5", _t5, _seq2seq_inputs, "encoder-decoder", True,
         "relative position bias passed as `position_bias`; scaling=1.0; cross-attn via key_value_states"),
    Arch("bart", _bart, _seq2seq_inputs, "encoder-decoder", True, "learned positions; cross-attn"),
    Arch("whisper", _whisper, _whisper_inputs, "audio", True,
         "enc-dec over 32 mel frames (16 after conv); no masks; q pre-scaled, scaling=1.0"),
]}

UNROUTABLE: dict[str, Arch] = {a.name: a for a in [
    _decoder("bloom", _bloom, "alibi; attention hard-coded (baddbmm) in BloomAttention"),
    _decoder("mpt", _mpt, "alibi; attention hard-coded in MptAttention"),
    _decoder("falcon", _falcon, "alibi=True; own sdpa branch (used unless output_attentions) != its eager branch"),
]}
