"""The per-token classification head shared by the taggers (dropout + linear, as in BERT NER)."""
import torch.nn as nn


class TaggingHead(nn.Module):
    def __init__(self, input_dim: int, num_tags: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(input_dim, num_tags)

    def forward(self, features):
        """[B, T, C] features -> [B, T, num_tags] logits."""
        return self.out_proj(self.dropout(features))
