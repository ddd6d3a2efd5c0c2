"""AttendOut's maths ("Not All Attention Is All You Need"), pure torch: its game (Section 4)
and the attention-score operations of its Sections 3.2 and 7 (scores dropout, uniform rows,
the scheduled rate), which the cheap regularizers (``--criterion attention_regularizer``) use.

The generator (G-Net) reads the input tokens and, for each of the n attention layers it
attacks, gives one drop logit per attention element; keep/drop actions are sampled with
Gumbel noise (Bernoulli(sigmoid(logit)) by the Gumbel-max trick); the policy is trained by
REINFORCE with a moving-average baseline (Eq. 5), rewarded by how much better the attacked
network (A-Net) scores than the defended one (D-Net). The fairseq criterion that plays the
game lives on top of this module; nothing here imports fairseq.

Choices the paper leaves open (stated here, where they are made):
* G-Net embeds the tokens with its own embedding and learned positions (it "reads the same
  input"), dimension ``dim``; its n layers are one single-head self-attention block applied n
  times (one parameter set), residual + LayerNorm, no feed-forward; layer i's pre-softmax
  scores plus one learned bias are the drop logits of the i-th attacked map, shared by all
  of that map's heads; the bias starts at logit(``init_rate``).
* Eq. 5's log-likelihood of an action is the mean over the valid elements of every attacked
  map (its 1 / (n l^2) normalisation, padding excluded).
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .masks import drop_fill_value


class GNet(nn.Module):
    """The generator: ``forward(tokens [B, S], real [B, S])`` -> n drop-logit maps [B, S, S]."""

    def __init__(self, vocab_size: int, n_layers: int, dim: int = 64, max_positions: int = 1024,
                 padding_idx: int = 1, init_rate: float = 0.1):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"G-Net needs at least one layer, got {n_layers}")
        if not 0.0 < init_rate < 1.0:
            raise ValueError(f"init_rate must be in (0, 1), got {init_rate}")
        self.n_layers, self.dim = n_layers, dim
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)
        self.positions = nn.Embedding(max_positions, dim)
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.norm = nn.LayerNorm(dim)
        self.bias = nn.Parameter(torch.tensor(math.log(init_rate / (1.0 - init_rate))))

    def forward(self, tokens: Tensor, real: Tensor) -> List[Tensor]:
        if tokens.size(1) > self.positions.num_embeddings:
            raise ValueError(f"G-Net reads at most {self.positions.num_embeddings} positions, got {tokens.size(1)}")
        h = self.embed(tokens) + self.positions(torch.arange(tokens.size(1), device=tokens.device))[None]
        keys_ok = real[:, None, :]
        logits = []
        for _ in range(self.n_layers):  # one block, applied n times: the shared parameter set
            scores = self.query(h) @ self.key(h).transpose(1, 2) / math.sqrt(self.dim)
            logits.append(scores + self.bias)
            attn = torch.softmax(scores.masked_fill(~keys_ok, torch.finfo(scores.dtype).min), dim=-1)
            h = self.norm(h + attn @ self.value(h))
        return logits


def gumbel(shape, generator: Optional[torch.Generator] = None, device=None) -> Tensor:
    u = torch.rand(shape, generator=generator, device=device).clamp_(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def sample_drops(logits: Tensor, valid: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Keep/drop actions by the Gumbel-max trick over (drop: logit, keep: 0): drop with
    probability sigmoid(logit); only valid elements are dropped. True = drop."""
    noise = gumbel(logits.shape, generator, logits.device) - gumbel(logits.shape, generator, logits.device)
    return (logits.detach() + noise > 0) & valid


def action_log_likelihood(logits: Sequence[Tensor], drops: Sequence[Tensor], valid: Sequence[Tensor]) -> Tensor:
    """Per example [B]: the mean over every attacked map's valid elements of
    log P(action) = log sigmoid(logit) for a drop, log sigmoid(-logit) for a keep (Eq. 5's
    independent factorisation, normalised by the number of elements)."""
    total, count = 0.0, 0.0
    for lg, d, v in zip(logits, drops, valid):
        ll = torch.where(d, nn.functional.logsigmoid(lg), nn.functional.logsigmoid(-lg))
        total = total + (ll * v).flatten(1).sum(1)
        count = count + v.flatten(1).sum(1)
    return total / torch.clamp(torch.as_tensor(count, dtype=torch.float32), min=1.0)


def reinforce_loss(log_likelihoods: Tensor, rewards: Tensor, baseline: float) -> Tensor:
    """Minus Eq. 5's objective for one sample of actions (m = 1): -sum_t (r_t - b) log P(a_t);
    its gradient is Eq. 5's with the sign of a loss to minimise."""
    return -((rewards.detach() - baseline) * log_likelihoods).sum()


class MovingAverage:
    """The baseline b of Eq. 5: b <- decay * b + (1 - decay) * mean(rewards); starts at the
    first mean."""

    def __init__(self, decay: float = 0.9):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay, self.value, self.count = decay, 0.0, 0

    def update(self, rewards: Tensor) -> float:
        m = float(rewards.float().mean())
        self.value = m if self.count == 0 else self.decay * self.value + (1.0 - self.decay) * m
        self.count += 1
        return self.value

    def state_dict(self) -> dict:
        return {"decay": self.decay, "value": self.value, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.value, self.count = state["decay"], state["value"], state["count"]


def attacker_probability(score_attacker: float, score_defender: float, temperature: float = 1.0) -> float:
    """Algorithm 1, line 9: the probability that the next round starts from A-Net (else
    D-Net): a softmax over the two scores, so the better one is likelier."""
    z = (score_attacker - score_defender) / temperature
    return 1.0 / (1.0 + math.exp(-z))


# ---------------------------------------------------------------------------- attention-score operations
# (Sections 3.2 and 7: AttendOut's masks, and the cheap regularizers next to AD-DROP in the studies)


def uniform_rows(scores: Tensor, valid: Tensor, rows: Tensor) -> Tensor:
    """Eq. 4 of AttendOut on the rows ``rows`` ([..., T, 1] bool): every valid key scores 0,
    so the softmax is exactly 1/n over the row's valid keys; invalid keys (padding, future
    positions) keep the score the model gave them (masked, or masked afterwards by fairseq)."""
    return torch.where(rows & valid, torch.zeros((), dtype=scores.dtype, device=scores.device), scores)


def scores_dropout(scores: Tensor, valid: Tensor, p: float,
                   generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
    """Eq. 3: each valid key's pre-softmax score is removed with probability p (the dtype's
    minimum, so exp() of it is 0); a row that loses all its valid keys attends uniformly to
    them (Eq. 4: softmax of an all -inf row is the constant 1/n). Returns (scores, drop)."""
    valid = valid.expand_as(scores).bool()
    drop = valid & (torch.rand(scores.shape, generator=generator, device=scores.device) < p)
    return remove_scores(scores, valid, drop), drop


def remove_scores(scores: Tensor, valid: Tensor, drop: Tensor) -> Tensor:
    """Eq. 3 for a given ``drop`` (a subset of ``valid``): removed keys get the dtype's minimum,
    and a row that loses all its valid keys attends uniformly to them (Eq. 4)."""
    valid = valid.expand_as(scores).bool()
    out = scores.masked_fill(drop, drop_fill_value(scores.dtype))
    emptied = ((drop == valid).all(dim=-1, keepdim=True)) & valid.any(dim=-1, keepdim=True)
    return uniform_rows(out, valid, emptied)


def scheduled_rate(start: float, slope: float, update: int, per: int = 1000) -> float:
    """AttendOut Section 7.2's scheduled Bernoulli rate: ``start + slope * update / per``,
    clipped to [0, 1] (piece-wise linear)."""
    return min(1.0, max(0.0, start + slope * update / per))
