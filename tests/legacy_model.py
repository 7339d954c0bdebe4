"""A PreTrainedModel whose attention is hand-written and bypasses transformers' interface."""

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


class LegacyConfig(PretrainedConfig):
    model_type = "attnlab-legacy-test"

    def __init__(self, hidden_size=16, **kwargs):
        self.hidden_size = hidden_size
        super().__init__(**kwargs)


class LegacySelfAttention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v


class LegacyModel(PreTrainedModel):
    config_class = LegacyConfig

    def __init__(self, config):
        super().__init__(config)
        self.attn = LegacySelfAttention(config.hidden_size)

    def forward(self, x):
        return self.attn(x)
