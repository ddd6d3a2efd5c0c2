"""Word-level tags from per-piece logits: arg-max over real tags at labelled positions."""
from typing import List

import torch


def predict_ids(logits: torch.Tensor, nspecial: int) -> torch.Tensor:
    """[B, T, C] -> [B, T] tag indices, never a special symbol (<s>, <pad>, </s>, <unk>)."""
    return logits[..., nspecial:].argmax(dim=-1) + nspecial


def word_tags(ids: torch.Tensor, labelled: torch.Tensor, tag_dict) -> List[List[str]]:
    """Per sentence, the tags at ``labelled`` positions (a word's first piece), in order."""
    ids, labelled = ids.cpu(), labelled.cpu()
    return [[tag_dict[i] for i in row[mask].tolist()] for row, mask in zip(ids, labelled)]
