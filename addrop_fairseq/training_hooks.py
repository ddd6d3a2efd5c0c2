"""Learn fairseq's epoch and update number from the task, so stock tasks need no change.

The trainer calls ``task.begin_epoch(epoch, model)`` at the start of every epoch (also right
after resuming from a checkpoint, with the resumed epoch) and ``task.train_step(...,
update_num=...)`` for every batch. The criterion only sees ``(model, sample)``, so these
two calls are wrapped on the task *instance* (not the class) to tell it where training is.
"""
import functools
import inspect


class _Followed:
    """What is kept on a followed task (``task._addrop``): the callbacks to call."""

    def __init__(self, on_begin_epoch, on_train_step):
        self.on_begin_epoch = on_begin_epoch
        self.on_train_step = on_train_step
        self.optimizer = None  # the trainer's, as the last train_step received it


def follow_training(task, on_begin_epoch, on_train_step) -> None:
    """Call ``on_begin_epoch(epoch, model)`` / ``on_train_step(update_num)`` before the task's own.

    Following again (a new criterion on the same task) replaces the callbacks.
    """
    followed = getattr(task, "_addrop", None)
    if followed is not None:
        followed.on_begin_epoch, followed.on_train_step = on_begin_epoch, on_train_step
        return
    followed = task._addrop = _Followed(on_begin_epoch, on_train_step)
    begin_epoch = task.begin_epoch
    train_step = task.train_step
    update_num_pos = list(inspect.signature(train_step).parameters).index("update_num")

    @functools.wraps(begin_epoch)
    def begin_epoch_hook(epoch, model):
        followed.on_begin_epoch(epoch, model)
        return begin_epoch(epoch, model)

    names = list(inspect.signature(train_step).parameters)
    optimizer_pos = names.index("optimizer") if "optimizer" in names else None

    @functools.wraps(train_step)
    def train_step_hook(*args, **kwargs):
        update_num = kwargs["update_num"] if "update_num" in kwargs else args[update_num_pos]
        # the trainer's optimizer, for criteria that train a second network like it (attendout)
        if "optimizer" in kwargs:
            followed.optimizer = kwargs["optimizer"]
        elif optimizer_pos is not None and optimizer_pos < len(args):
            followed.optimizer = args[optimizer_pos]
        followed.on_train_step(update_num)
        return train_step(*args, **kwargs)

    task.begin_epoch = begin_epoch_hook
    task.train_step = train_step_hook
