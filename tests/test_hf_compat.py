"""Why ``hf/_compat.py`` writes ``sys.modules["torchaudio"] = None``: a torchaudio wheel built for
another torch raises OSError on import, and transformers' model modules import torchaudio
whenever it *looks* installed. The guard marks such a torchaudio absent; these tests pin the two
assumptions that makes work (Python's and transformers') and the guard's own behaviour."""
import importlib
import importlib.util
import sys

import pytest

from addrop_fairseq.hf import _compat

BROKEN = "raise OSError('libtorchaudio.so: undefined symbol: built against another torch')\n"


@pytest.fixture
def fresh_guard(monkeypatch, tmp_path):
    """The guard not run yet, no torchaudio imported, and sys.modules restored afterwards."""
    monkeypatch.setitem(sys.modules, "torchaudio", None)  # recorded: undone (removed) at the end
    monkeypatch.delitem(sys.modules, "torchaudio")
    monkeypatch.setattr(_compat, "_checked", False)
    return tmp_path


def broken_torchaudio_on_path(monkeypatch, root):
    (root / "torchaudio").mkdir()
    (root / "torchaudio" / "__init__.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(root))  # first on sys.path: shadows any real torchaudio


def test_none_in_sys_modules_makes_find_spec_report_the_package_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchaudio", None)
    assert importlib.util.find_spec("torchaudio") is None, (
        "hf/_compat.py marks a broken torchaudio absent with sys.modules['torchaudio'] = None, which "
        "relies on importlib.util.find_spec returning None for such a name; this Python no longer does")
    with pytest.raises(ImportError):
        importlib.import_module("torchaudio")


def test_transformers_decides_torchaudio_is_absent_by_find_spec(monkeypatch):
    from transformers.utils import import_utils

    probe = getattr(import_utils, "_is_package_available", None)
    assert probe is not None, (
        "transformers.utils.import_utils._is_package_available is gone: hf/_compat.py assumes transformers "
        "asks importlib.util.find_spec whether torchaudio is installed; check how it decides now")
    monkeypatch.setitem(sys.modules, "torchaudio", None)
    available = probe("torchaudio")
    available = available[0] if isinstance(available, tuple) else available
    assert not available, (
        "transformers still sees torchaudio with sys.modules['torchaudio'] = None: the guard in "
        "hf/_compat.py would no longer keep a broken torchaudio out of transformers' model imports")


def test_a_torchaudio_that_fails_to_import_is_marked_absent_once_with_a_warning(fresh_guard, monkeypatch, caplog):
    broken_torchaudio_on_path(monkeypatch, fresh_guard)
    with pytest.raises(OSError):  # the failure the guard exists for
        importlib.import_module("torchaudio")
    sys.modules.pop("torchaudio", None)
    with caplog.at_level("WARNING", logger=_compat.__name__):
        _compat.guard_torchaudio()
    assert "torchaudio" in sys.modules and sys.modules["torchaudio"] is None
    assert importlib.util.find_spec("torchaudio") is None
    assert "torchaudio is installed but cannot be imported (OSError: libtorchaudio.so" in caplog.text
    caplog.clear()
    _compat.guard_torchaudio()  # checked once per process
    assert caplog.text == ""


def test_an_importable_or_absent_torchaudio_is_left_alone(fresh_guard, monkeypatch):
    (fresh_guard / "torchaudio").mkdir()
    (fresh_guard / "torchaudio" / "__init__.py").write_text("WORKS = True\n")
    monkeypatch.syspath_prepend(str(fresh_guard))
    _compat.guard_torchaudio()
    assert sys.modules["torchaudio"].WORKS

    monkeypatch.setattr(_compat, "_checked", False)
    monkeypatch.setitem(sys.modules, "torchaudio", None)
    monkeypatch.delitem(sys.modules, "torchaudio")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # not installed at all
    _compat.guard_torchaudio()
    assert "torchaudio" not in sys.modules
