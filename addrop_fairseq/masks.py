"""AD-DROP's candidate region and drop mask (paper Eq. 6-7), pure torch.

Conventions shared by every function here:

* ``attribution`` and ``valid`` have shape ``[..., T, S]``: one row per query, one column per
  key. ``valid`` is True where the query may attend to the key (padding and causal masks
  already applied); only valid keys are ever sorted, counted, candidates or dropped.
* The returned mask is boolean, True = drop (the key gets a large negative score before
  softmax in the second forward pass).
* p and q are trusted to be in [0, 1]: they are checked once, where they enter
  (``options.check_rate``: fairseq-train's parser, the engine, the Trainer's arguments).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

STRATEGIES = ("high", "low")


def threshold_index(n: Tensor, p: float) -> Tensor:
    """k = int(n (1 - p)): the 0-based sorted position where the candidate region starts.

    Computed as ``floor(n * (1 - p) + 1e-9)`` in float64 so that values that are integers on
    paper stay integers (n=10, p=0.9 gives k=1, not 0 as plain float arithmetic does).
    k == n means "no candidate" (p = 0).
    """
    prod = n.to(torch.float64) * (1.0 - float(p))
    return torch.floor(prod + 1e-9).to(torch.long).clamp_(min=0)


def _compact(mask: Tensor) -> Tensor:
    """``mask`` without its broadcast (stride-0) dimensions, so a reduction reads each
    element once; the result broadcasts back to ``mask``'s shape."""
    index = tuple(
        slice(0, 1) if stride == 0 and size > 1 else slice(None)
        for size, stride in zip(mask.shape, mask.stride())
    )
    return mask[index]


def _candidates(attribution: Tensor, valid: Tensor, p: float, strategy: str):
    """Eq. 6 and what the drop step reuses: (candidates, rank scores with invalid keys at the
    dtype's max (the lowest-ranked candidate has the smallest), n valid keys per row)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if attribution.shape != valid.shape:
        valid = valid.expand_as(attribution)
    scores = attribution.detach().float()
    big = torch.finfo(scores.dtype).max
    n = _compact(valid).sum(dim=-1, keepdim=True)  # [..., T, 1] (broadcast dims kept at 1)
    if strategy == "high":
        k = threshold_index(n, p)
        # invalid keys sort last so that position k of the sorted row is among the valid ones
        filled = torch.where(valid, scores, big)
        thresh = filled.sort(dim=-1).values.gather(-1, k.clamp(max=scores.size(-1) - 1).expand(scores.shape[:-1] + (1,)))
        # no candidate where k == n: a NaN threshold compares False with every score
        thresh = thresh.masked_fill(k >= n, float("nan"))
        return valid & (scores >= thresh), filled, n
    # "low", as the reference code's prior experiment: the keys strictly below the
    # int(p n)-th smallest (0-based), i.e. the int(p n) lowest (fewer on ties); all of them
    # when int(p n) >= n
    k = torch.floor(n.to(torch.float64) * float(p) + 1e-9).to(torch.long)
    ascending = torch.where(valid, scores, big).sort(dim=-1).values
    thresh = ascending.gather(-1, k.clamp(max=scores.size(-1) - 1).expand(scores.shape[:-1] + (1,)))
    thresh = thresh.masked_fill(k >= n, float("inf"))
    return valid & (scores < thresh), torch.where(valid, -scores, big), n


def candidate_region(
    attribution: Tensor, valid: Tensor, p: float, strategy: str = "high"
) -> Tensor:
    """Eq. 6: per row, the valid keys whose attribution is >= the k-th smallest, k = int(n(1-p)).

    Ties at the threshold are all candidates, as in the original code. ``strategy="low"``
    (the paper's prior experiment) follows the reference code's drop-low: the keys strictly
    below the int(p n)-th smallest, i.e. the int(p n) lowest-attribution keys (fewer on ties).
    """
    return _candidates(attribution, valid, p, strategy)[0]


def _keep_one_in_place(drop: Tensor, filled: Tensor, n: Tensor) -> Tensor:
    """Un-drop one key in every row that would otherwise lose all of its n > 0 valid keys.

    ``drop`` is a subset of the valid keys, so a row is emptied iff it drops all n of them,
    and then its valid keys are exactly the dropped ones: the argmin of ``filled`` (rank
    scores, invalid keys at the max) is the dropped key the strategy ranks least (lowest
    attribution for "high", highest for "low"), so the row still loses its top-ranked keys.
    No NaN can be in an emptied row (a NaN score is never a candidate). Writes into
    ``drop``; no host sync.
    """
    emptied = (drop.sum(dim=-1, keepdim=True) == n) & (n > 0)
    restore = filled.argmin(dim=-1, keepdim=True)
    return drop.scatter_(-1, restore, drop.gather(-1, restore) & ~emptied)


def addrop_drop_mask(
    attribution: Tensor,
    valid: Tensor,
    p: float,
    q: float,
    strategy: str = "high",
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Eq. 6-7: candidates by attribution, each dropped with probability q. True = drop.

    A row never loses all of its valid keys (a decoder's first row has a single key).
    """
    valid = valid.expand_as(attribution).bool()
    candidates, filled, n = _candidates(attribution, valid, p, strategy)
    if q <= 0.0:
        return torch.zeros_like(candidates)
    if q >= 1.0:
        drop = candidates
    else:
        u = uniform(candidates, generator)
        drop = candidates & (u < q)
    return _keep_one_in_place(drop, filled, n)


def drop_fill_value(dtype: torch.dtype) -> float:
    """The score given to dropped keys: finite (no NaN in any row), yet exp() of it is 0.

    The dtype's most negative finite number: masked_fill replaces (never adds), so it cannot
    overflow to -inf in fp16/bf16.
    """
    return torch.finfo(dtype).min


def attributed_rows(attribution: Tensor, valid: Tensor) -> Tensor:
    """[..., T, 1] True for the query rows with a non-zero attribution at some valid key.

    A row whose attribution is zero at every key (e.g. a non-[CLS] row of a classifier's
    last layer: nothing it attends reaches the output) ties all its keys, so Eq. 6 makes
    them all candidates and Eq. 7 drops each with probability q without any effect on the
    loss. ``addrop_drop_frac_attributed`` counts the drop over the other rows only.
    """
    return (attribution.detach().ne(0) & valid).any(dim=-1, keepdim=True)


def uniform(like: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """U[0, 1) float32 draws of ``like``'s shape, on its device (contiguous). Without a generator,
    ``rand_like``: the same draws as ``torch.rand(shape)``, and it also traces under
    ``torch.compile`` with dynamic shapes (``torch.rand(..., generator=None)`` takes an
    overload that needs concrete sizes: a compiled pass 2 would fail on its first recompile)."""
    if generator is None:
        return torch.rand_like(like, dtype=torch.float32, memory_format=torch.contiguous_format)
    return torch.rand(like.shape, generator=generator, device=like.device, dtype=torch.float32)


def random_region(valid: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """The RD ablation's "attribution": uniform noise, so Eq. 6 picks a random region."""
    return uniform(valid, generator)


class DropMasks:
    """Pass 2's drop masks, site by site (what :class:`addrop_fairseq.sites.Masker` calls).

    ``masks(i, valid)`` is Eq. 6-7 on site i's pass-1 attribution (each used once, then
    let go), on a :func:`random_region` when ``attributions`` is None (RD), and no drop for a
    site that has no attribution (it did not run in pass 1: LayerDrop). ``dropped`` and
    ``valid`` count the keys over the masked maps (``addrop_drop_frac``'s numerator and
    denominator); ``dropped_attributed`` and ``valid_attributed`` the same over the query
    rows of :func:`attributed_rows` (``addrop_drop_frac_attributed``: the drop that can reach
    the output; RD's random region counts every row). All four are tensors (no host sync)
    once a site was masked. ``keep=True`` keeps each site's (attribution, mask) in
    ``kept[i]`` (for ``addrop-explain``; training lets them go).
    """

    def __init__(self, attributions: Optional[Sequence[Optional[Tensor]]], p: float, q: float,
                 strategy: str = "high", generator: Optional[torch.Generator] = None, keep: bool = False):
        self.attributions: Optional[List[Optional[Tensor]]] = None if attributions is None else list(attributions)
        # a site that did not run in pass 1 (LayerDrop): the target may then depend on no map at all
        # (every decoder layer skipped), and all-zero attributions are that, not a broken pass 1
        self.skipped_sites = self.attributions is not None and any(a is None for a in self.attributions)
        self.p, self.q, self.strategy, self.generator = p, q, strategy, generator
        self.dropped: Tensor | int = 0
        self.valid: Tensor | int = 0
        self.dropped_attributed: Tensor | int = 0
        self.valid_attributed: Tensor | int = 0
        self.kept: Optional[Dict[int, Tuple[Tensor, Tensor]]] = {} if keep else None

    def __call__(self, index: int, valid: Tensor) -> Tensor:
        if self.attributions is None:
            attribution = random_region(valid, self.generator)
        else:
            attribution, self.attributions[index] = self.attributions[index], None
            if attribution is None:
                return torch.zeros_like(valid)
        drop = addrop_drop_mask(attribution, valid, self.p, self.q, self.strategy, self.generator)
        self.dropped += drop.sum()
        self.valid += valid.sum()
        rows = attributed_rows(attribution, valid.expand_as(drop))
        self.dropped_attributed += (drop & rows).sum()
        self.valid_attributed += (valid.expand_as(drop) & rows).sum()
        if self.kept is not None:
            self.kept[index] = (attribution, drop)
        return drop

    def all_zero(self) -> bool:
        """True when attributions were given for every site, some valid key was masked, and
        every attribution was zero at every valid key: Eq. 6 then ties every key and AD-DROP is
        random attention dropout (a compiled pass 1, a head that ignores the maps). Not when
        LayerDrop skipped a site in pass 1: with every decoder layer skipped the target depends on
        no recorded map, and the zeros are true. One host sync."""
        if self.attributions is None or self.skipped_sites or not torch.is_tensor(self.valid):
            return False
        return bool((self.valid > 0) & (self.valid_attributed == 0))
