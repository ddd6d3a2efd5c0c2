"""The presets: fairseq hydra configs, one yaml per set-up and size, for ``fairseq-hydra-train``.

    addrop_fairseq/config/wmt16/{en_ro,tr_en}.yaml            full-size translation (GPU)
    addrop_fairseq/config/wmt16/{en_ro,tr_en}_smoke.yaml      the scripts' --smoke CPU size
    addrop_fairseq/config/wmt16/en_ro_demo.yaml               scripts/wmt16_demo.sh's size
    addrop_fairseq/config/conll2003/{ner,ner_smoke}.yaml      CoNLL-2003 NER, transformer_tagger
    addrop_fairseq/config/glue/{rte,mrpc,cola,stsb,sst2}.yaml MiniLM, the paper's Table 11 p, q, layers

    fairseq-hydra-train --config-dir "$(python -m addrop_fairseq.config glue)" --config-name rte \\
        task.data=data-bin/rte model.hf_model_dir=$MINILM \\
        common.user_dir="$(python -m addrop_fairseq.config --user-dir)"

``python -m addrop_fairseq.config`` lists the presets; ``... SETUP`` prints a set-up's folder
(for ``--config-dir``); ``... --user-dir`` the plugin's folder (for ``common.user_dir``). Each
file's header says what it trains and which values (``???``) the command line must give.
:mod:`.overrides` turns fairseq-train flags into hydra overrides (the scripts' pass-through).
"""
import os
from typing import Dict, List

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))
PLUGIN_DIR = os.path.dirname(CONFIG_DIR)


def config_dir(setup: str) -> str:
    """The folder of a set-up's presets (``--config-dir``)."""
    path = os.path.join(CONFIG_DIR, setup)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no preset set-up {setup!r}; known: {sorted(presets())}")
    return path


def presets() -> Dict[str, List[str]]:
    """{set-up: [preset names]} (``--config-name``)."""
    return {
        d: sorted(f[:-5] for f in os.listdir(os.path.join(CONFIG_DIR, d)) if f.endswith(".yaml"))
        for d in sorted(os.listdir(CONFIG_DIR))
        if os.path.isdir(os.path.join(CONFIG_DIR, d)) and not d.startswith(("_", "."))
    }
