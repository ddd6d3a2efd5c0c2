"""Registration is one explicit list, run when fairseq is imported first (fairseq-train's
--user-dir); the maths and the data helpers import without fairseq."""
import subprocess
import sys

from conftest import REPO, cli_env


def python(code):
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300)


def test_helpers_import_without_fairseq():
    proc = python("import sys; import addrop_fairseq.masks, addrop_fairseq.attribution, addrop_fairseq.sites, "
                  "addrop_fairseq.schedule, addrop_fairseq.mt.wmt16; print('fairseq' in sys.modules)")
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr[-2000:]


def test_importing_after_fairseq_registers_everything():
    proc = python(
        "import fairseq, addrop_fairseq\n"
        "from fairseq.criterions import CRITERION_REGISTRY\n"
        "from fairseq.models import ARCH_MODEL_REGISTRY\n"
        "from fairseq.tasks import TASK_REGISTRY\n"
        "print(sorted(c for c in CRITERION_REGISTRY if c in ('addrop_ce', 'sentence_prediction_rdrop')),"
        " 'sequence_tagging' in TASK_REGISTRY,"
        " sorted(a for a in ARCH_MODEL_REGISTRY if a in ('transformer_tagger', 'roberta_tagger', 'hf_seq2seq',"
        " 'hf_token_classifier', 'hf_sequence_classifier')))\n"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == (
        "['addrop_ce', 'sentence_prediction_rdrop'] True ['hf_seq2seq', 'hf_sequence_classifier', "
        "'hf_token_classifier', 'roberta_tagger', 'transformer_tagger']")


def test_wmt16_helper_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "addrop_fairseq.mt.wmt16", "--help"], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "spm-train" in proc.stdout
