"""Tell criteria where fairseq's training is, so stock tasks need no change.

The trainer calls, on the task, ``get_batch_iterator(dataset, ...)`` for each split's
iterator (the training one before every epoch), ``begin_epoch(epoch, model)`` at the start of every epoch
(also right after resuming, with the resumed epoch), ``train_step(sample, model, criterion,
optimizer, update_num, ignore_grad)`` for every micro-batch (``--update-freq k``: k calls with
one ``update_num``) and ``optimizer_step(optimizer, model, update_num)`` once per update,
after every micro-batch's backward. The criterion only sees ``(model, sample)``, so these
four methods are wrapped on the task *instance* (not the class) to tell every
:class:`Follower` of the task.

fairseq internals assumed here (pinned: fairseq-fixed==0.12.3.1, ``FairseqTask`` and
``Trainer.train_step``): those four names, the parameters ``update_num`` / ``ignore_grad`` /
``optimizer`` of ``train_step``, ``dataset`` of ``get_batch_iterator``, and that the trainer
calls them in that order.
``tests/test_fairseq_assumptions.py`` fails, naming the assumption, if a version bump changes them.
"""
import functools
import inspect
import weakref


class Follower:
    """What a followed task tells a criterion; override what you need."""

    def made_batch_iterator(self, dataset, iterator) -> None:
        """After the task's ``get_batch_iterator``: ``iterator`` (an ``EpochBatchIterator``)
        goes over ``dataset`` (the training split's before each epoch; valid splits too)."""

    def begin_epoch(self, epoch: int, model) -> None:
        """Before the task's own ``begin_epoch``."""

    def begin_train_step(self, update_num: int, ignore_grad: bool) -> None:
        """Before each micro-batch's ``train_step``: ``update_num`` updates are done;
        ``ignore_grad``: a dummy batch whose loss the task zeroes."""

    def end_update(self, optimizer, update_num: int) -> None:
        """After the task's ``optimizer_step``: update ``update_num`` (0-based) is done, with
        ``optimizer`` (fairseq's, the trainer's) at the learning rate it stepped with."""


class _Followed:
    """What is kept on a followed task (``task._addrop``): its followers, weakly (a discarded
    criterion is not kept alive or called)."""

    def __init__(self):
        self._refs = []

    def add(self, follower: Follower) -> None:
        if follower not in self.followers():
            self._refs.append(weakref.ref(follower))

    def followers(self):
        alive = [r() for r in self._refs]
        self._refs = [r for r, f in zip(self._refs, alive) if f is not None]
        return [f for f in alive if f is not None]


def follow_training(task, follower: Follower) -> None:
    """Tell ``follower`` the task's epochs, micro-batches and updates, before the task's own
    methods run. Several followers (criteria) may follow one task: each is told."""
    followed = getattr(task, "_addrop", None)
    if followed is None:
        followed = task._addrop = _Followed()
        _wrap(task, followed)
    followed.add(follower)


def _wrap(task, followed: _Followed) -> None:
    begin_epoch, train_step, optimizer_step = task.begin_epoch, task.train_step, task.optimizer_step
    get_batch_iterator = task.get_batch_iterator
    iterator_names = list(inspect.signature(get_batch_iterator).parameters)
    # fairseq's (dataset, ...); a task that overrides it as (*args, **kwargs) passes dataset first too
    dataset_pos = iterator_names.index("dataset") if "dataset" in iterator_names else 0
    step_names = list(inspect.signature(train_step).parameters)
    update_num_pos = step_names.index("update_num")
    ignore_grad_pos = step_names.index("ignore_grad") if "ignore_grad" in step_names else None
    opt_names = list(inspect.signature(optimizer_step).parameters)

    def arg(args, kwargs, name, pos, default=None):
        if name in kwargs:
            return kwargs[name]
        return args[pos] if pos is not None and pos < len(args) else default

    @functools.wraps(begin_epoch)
    def begin_epoch_hook(epoch, model):
        for f in followed.followers():
            f.begin_epoch(epoch, model)
        return begin_epoch(epoch, model)

    @functools.wraps(train_step)
    def train_step_hook(*args, **kwargs):
        update_num = arg(args, kwargs, "update_num", update_num_pos)
        ignore_grad = bool(arg(args, kwargs, "ignore_grad", ignore_grad_pos, False))
        for f in followed.followers():
            f.begin_train_step(update_num, ignore_grad)
        return train_step(*args, **kwargs)

    @functools.wraps(optimizer_step)
    def optimizer_step_hook(*args, **kwargs):
        result = optimizer_step(*args, **kwargs)
        optimizer = arg(args, kwargs, "optimizer", opt_names.index("optimizer"))
        update_num = arg(args, kwargs, "update_num", opt_names.index("update_num"))
        for f in followed.followers():
            f.end_update(optimizer, update_num)
        return result

    @functools.wraps(get_batch_iterator)
    def get_batch_iterator_hook(*args, **kwargs):
        iterator = get_batch_iterator(*args, **kwargs)
        dataset = arg(args, kwargs, "dataset", dataset_pos)
        for f in followed.followers():
            f.made_batch_iterator(dataset, iterator)
        return iterator

    task.get_batch_iterator = get_batch_iterator_hook
    task.begin_epoch = begin_epoch_hook
    task.train_step = train_step_hook
    task.optimizer_step = optimizer_step_hook


__all__ = ["Follower", "follow_training"]
