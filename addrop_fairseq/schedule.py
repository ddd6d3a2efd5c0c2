"""Cross-tuning (paper Algorithm 1): which updates are AD-DROP updates."""

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
