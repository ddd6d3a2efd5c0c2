"""Registration is one explicit list, run whichever of the plugin and fairseq is imported first
(fairseq-train's --user-dir, a script importing the plugin before fairseq, a module of ours that
imports fairseq); the maths and the data helpers import without fairseq. Each order runs in a
fresh interpreter."""
import subprocess
import sys

import pytest

from conftest import REPO, cli_env

pytestmark = pytest.mark.slow  # starts subprocesses (fairseq/HF CLIs, fresh interpreters)

PLUGIN = str(REPO / "addrop_fairseq")


def python(code):
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300)


def test_helpers_import_without_fairseq():
    proc = python("import sys; import addrop_fairseq.masks, addrop_fairseq.attribution, addrop_fairseq.sites, "
                  "addrop_fairseq.schedule, addrop_fairseq.attendout_maths, addrop_fairseq.hf, addrop_fairseq.mt.wmt16; "
                  "print('fairseq' in sys.modules)")
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr[-2000:]


REGISTERED = (
    "from fairseq.criterions import CRITERION_REGISTRY\n"
    "from fairseq.models import ARCH_MODEL_REGISTRY\n"
    "from fairseq.tasks import TASK_REGISTRY\n"
    "print(sorted(c for c in CRITERION_REGISTRY if c in ('addrop_ce', 'sentence_prediction_rdrop')),"
    " 'sequence_tagging' in TASK_REGISTRY,"
    " sorted(a for a in ARCH_MODEL_REGISTRY if a in ('transformer_tagger', 'roberta_tagger', 'hf_seq2seq',"
    " 'hf_token_classifier', 'hf_sequence_classifier')))\n"
)
EVERYTHING = ("['addrop_ce', 'sentence_prediction_rdrop'] True ['hf_seq2seq', 'hf_sequence_classifier', "
              "'hf_token_classifier', 'roberta_tagger', 'transformer_tagger']")


@pytest.mark.parametrize("imports", [
    "import fairseq, addrop_fairseq",  # fairseq-train --user-dir
    "import addrop_fairseq, fairseq",  # a script importing the plugin first
    "import addrop_fairseq.masks\nimport importlib.util; assert importlib.util.find_spec('fairseq')\nimport fairseq",
    "import addrop_fairseq.hf.loading",  # a module of ours imports fairseq: registered once it is complete
    # command_line.load_checkpoint's own imports (it does not call register itself)
    "import sys, addrop_fairseq.command_line\nassert 'fairseq' not in sys.modules\nfrom fairseq import checkpoint_utils",
])
def test_every_import_order_registers_everything(imports):
    proc = python(imports + "\n" + REGISTERED)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == EVERYTHING


def test_training_parser_knows_the_plugin_after_importing_it_first():
    """The plugin first, then fairseq-train's own parsing with --user-dir (which fairseq then
    skips as already imported): the criterion, task and model are known."""
    proc = python(
        "import addrop_fairseq\n"
        "from fairseq import options\n"
        "from fairseq.dataclass.utils import convert_namespace_to_omegaconf\n"
        f"args = options.parse_args_and_arch(options.get_training_parser(), ['data', '--user-dir', {PLUGIN!r},"
        " '--task', 'sequence_tagging', '--arch', 'transformer_tagger_small', '--criterion', 'addrop_ce',"
        " '--addrop-p', '0.2'])\n"
        "cfg = convert_namespace_to_omegaconf(args)\n"
        "print(cfg.criterion._name, cfg.criterion.addrop_p, cfg.task._name, cfg.model._name)\n"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "addrop_ce 0.2 sequence_tagging transformer_tagger_small"


@pytest.mark.parametrize("imports", ["import fairseq, addrop_fairseq, addrop_twice",
                                     "import addrop_fairseq, addrop_twice, fairseq"])
def test_the_plugin_under_a_second_name_is_an_error_naming_both(imports, tmp_path):
    """Two copies would register addrop_ce twice (fairseq: 'Cannot register duplicate
    criterion'), each with its own attribution registry: refused, with the fix."""
    (tmp_path / "addrop_twice").symlink_to(PLUGIN, target_is_directory=True)
    proc = python(f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n" + imports)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: the AD-DROP plugin is imported twice, as 'addrop_fairseq'") and \
        "'addrop_twice'" in last and "import it under one name" in last, proc.stderr[-2000:]


def test_wmt16_helper_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "addrop_fairseq.mt.wmt16", "--help"], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "spm-train" in proc.stdout
