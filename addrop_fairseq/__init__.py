"""AD-DROP for fairseq.

Used as ``fairseq-train --user-dir addrop_fairseq --criterion addrop_ce ...``. Importing the
package registers the plugin with fairseq, in either import order (:func:`register`, the whole
list, in one place):

* criteria ``addrop_ce`` (:mod:`.criterions.addrop_ce`), ``attendout``,
  ``attention_regularizer`` and ``sentence_prediction_rdrop``;
* task ``sequence_tagging``; models ``transformer_tagger``, ``roberta_tagger``;
* HuggingFace models ``hf_seq2seq``, ``hf_token_classifier``, ``hf_sequence_classifier`` and
  ``--bpe hf`` / ``--tokenizer hf`` (transformers is imported only when one is built);
* the allowlist that lets torch's safe loading read fairseq checkpoints (:mod:`.safe_loading`).

fairseq imported first (``--user-dir``, or ``import fairseq`` above): registered now. Not yet
imported: registered as soon as fairseq has been imported (:class:`_RegisterAfterFairseq`),
so that ``import addrop_fairseq`` first cannot leave ``--criterion addrop_ce`` unknown while
``--user-dir`` is skipped as "already imported". Until then nothing imports fairseq: the
maths (:mod:`.masks`, :mod:`.attribution`, :mod:`.schedule`, :mod:`.sites`) and the data
helpers (``python -m addrop_fairseq.mt.wmt16``, ...) import without it.
"""
import importlib.abc
import importlib.util
import sys

__version__ = "0.2.0"


def register() -> None:
    """Register the plugin's criteria, tasks, models and checkpoint allowlist with fairseq
    (idempotent: modules are imported once; another copy's registration is refused by name)."""
    from fairseq.criterions import CRITERION_REGISTRY

    registered = getattr(CRITERION_REGISTRY.get("addrop_ce"), "__module__", f"{__name__}.criterions.addrop_ce")
    if registered != f"{__name__}.criterions.addrop_ce":
        other = sys.modules[registered.rsplit(".criterions.", 1)[0]]
        raise ImportError(
            f"the AD-DROP plugin is imported twice, as {other.__name__!r} ({other.__file__}) and as "
            f"{__name__!r} ({__file__}); fairseq registers it once: import it under one name "
            "(check sys.path, PYTHONPATH and --user-dir)"
        )
    from .criterions import addrop_ce, attendout, attention_regularizer, sentence_prediction_rdrop  # noqa: F401
    from .hf import bpe, classifiers, seq2seq  # noqa: F401
    from .models import roberta_tagger, transformer_tagger  # noqa: F401
    from .safe_loading import allow_fairseq_checkpoints
    from .tasks import sequence_tagging  # noqa: F401

    allow_fairseq_checkpoints()


class _RegisterAfterFairseq(importlib.abc.MetaPathFinder):
    """Calls :func:`register` once fairseq is imported, then leaves ``sys.meta_path``.

    It finds nothing itself: it wraps the loaders the other finders return for ``fairseq`` and
    for this package's modules. :func:`register` imports every module of the plugin, so when a
    module of ours is what imports fairseq (``import addrop_fairseq.hf.loading`` first), it waits
    until that import is complete: the last of ours to finish registers. A mere
    ``importlib.util.find_spec("fairseq")`` (an availability check) runs nothing."""

    def __init__(self):
        self.finding = False
        self.running = 0  # modules of ours being executed
        self.fairseq_imported = False

    def find_spec(self, name, path=None, target=None):
        if self.finding or not (name == "fairseq" or name.startswith(__name__ + ".")):
            return None
        self.finding = True
        try:
            spec = importlib.util.find_spec(name)  # what the other finders say
        finally:
            self.finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _Watched(spec.loader, self)
        return spec

    def executed(self, module) -> None:
        self.fairseq_imported |= module.__name__ == "fairseq"
        if self.fairseq_imported and self.running == 0 and self in sys.meta_path:
            sys.meta_path.remove(self)
            register()


class _Watched(importlib.abc.Loader):
    """A loader that tells the hook when its module has run, then steps aside."""

    def __init__(self, loader, hook):
        self.loader, self.hook = loader, hook

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        ours = module.__name__ != "fairseq"
        self.hook.running += ours
        try:
            self.loader.exec_module(module)
        finally:
            self.hook.running -= ours
            module.__loader__ = module.__spec__.loader = self.loader  # as if never wrapped
        self.hook.executed(module)

    def __getattr__(self, name):  # get_code (python -m), resource readers: the real loader's
        return getattr(self.loader, name)


if "fairseq" in sys.modules:  # loaded by fairseq (--user-dir) or after `import fairseq`
    register()
else:
    sys.meta_path.insert(0, _RegisterAfterFairseq())
