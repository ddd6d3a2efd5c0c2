"""Cross-tuning (paper Algorithm 1): which updates are AD-DROP updates, and whether a planned
training reaches one."""
import math
from typing import Optional, Tuple

SCHEDULES = ("cross", "always", "never")  # checked with the other options (options.ADDROP_CHECKS)


def addrop_active(schedule: str, epoch: int, num_updates: int, period: int = 0) -> bool:
    """Is this update an AD-DROP update?

    ``cross``: fairseq epochs are 1-based; odd epochs are plain fine-tuning and even epochs
    AD-DROP (Algorithm 1, line 4). With ``period > 0`` the alternation runs over updates
    instead: updates [0, period) plain, [period, 2 period) AD-DROP, ... (``num_updates`` is
    the number of updates done before this one, fairseq's ``update_num``).
    """
    if schedule == "always":
        return True
    if schedule == "never":
        return False
    if period > 0:
        return (num_updates // period) % 2 == 1
    return epoch % 2 == 0


def first_addrop_update(schedule: str, period: int, epoch: int, num_updates: int,
                        left_in_epoch: Optional[int] = None) -> Tuple[Optional[int], Optional[int]]:
    """(epoch, updates done before it) of the first AD-DROP update at or after the next update,
    which is update ``num_updates`` (0-based) of 1-based ``epoch``, with ``left_in_epoch``
    updates left in that epoch counting it. None where it cannot be told (an epoch length is
    needed and not given); ``(None, None)`` under ``never``."""
    if schedule == "never":
        return None, None
    if schedule == "always":
        return epoch, num_updates
    if period > 0:
        block = num_updates // period
        first = num_updates if block % 2 == 1 else (block + 1) * period
        return (epoch if first == num_updates else None), first
    if epoch % 2 == 0:
        return epoch, num_updates
    return epoch + 1, (None if left_in_epoch is None else num_updates + left_in_epoch)


def addrop_planned(schedule: str, period: int, epoch: int, num_updates: int, *, max_epoch: int = 0,
                   max_update: int = 0, left_in_epoch: Optional[int] = None,
                   updates_per_epoch: Optional[int] = None) -> Optional[bool]:
    """Will a training that stops after epoch ``max_epoch`` or ``max_update`` updates (0: no
    such limit) run an AD-DROP update from the point :func:`first_addrop_update` describes?
    None where it cannot be told. Cross-tuning with one epoch, or with fewer updates than an
    epoch, never does: the warning both front ends give before the first update."""
    first_epoch, first = first_addrop_update(schedule, period, epoch, num_updates, left_in_epoch)
    if schedule == "never":
        return False
    if max_epoch and first_epoch is not None and first_epoch > max_epoch:
        return False
    end = max_update if max_update else math.inf  # updates done when training stops
    if max_epoch and left_in_epoch is not None and updates_per_epoch is not None:
        end = min(end, num_updates + left_in_epoch + max(max_epoch - epoch, 0) * updates_per_epoch)
    elif max_epoch and first_epoch is None:
        return None
    if first is None:
        return None if end < math.inf else True
    return first < end
