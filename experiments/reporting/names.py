"""Method names (tables, legends) and the order tasks are shown in."""

METHOD_NAMES = {
    "ft": "FT (fine-tuning)",
    "addrop": "AD-DROP (GA, pseudo labels, cross-tuning)",
    "rd": "RD (random region, same p, q)",
    "attn_dropout": "extra attention dropout (0.1 + p·q, spread over the layers)",
    "addrop_dec": "AD-DROP on encoder + decoder self-attention",
    "addrop_best": "AD-DROP at the sensitivity map's best cell",
    "rdrop": "R-Drop",
    "attendout": "AttendOut (T = 20, scored on held-out training rows)",
    "scores_dropout": "attention scores dropout (0.1)",
    "attn_layerdrop": "attention LayerDrop (0.2)",
    "scheduled": "scheduled scores dropout",
}
SHORT_NAMES = {"addrop": "AD-DROP", "addrop_best": "AD-DROP (best cell)", "addrop_dec": "AD-DROP enc+dec", "rd": "RD", "attn_dropout": "attention dropout",
               "rdrop": "R-Drop", "attendout": "AttendOut", "scores_dropout": "scores dropout", "attn_layerdrop": "attention LayerDrop",
               "scheduled": "scheduled dropout"}
# one colour per method, the same in every figure that draws methods by name (matplotlib's ten
# "C0".."C9" first, then colours outside that cycle: "C10" would wrap to FT's "C0")
_COLORS = [f"C{i}" for i in range(10)] + ["black", "gold", "lime", "navy"]
assert len(_COLORS) >= len(METHOD_NAMES), "a method without a colour of its own: add one to _COLORS"
METHOD_COLORS = dict(zip(METHOD_NAMES, _COLORS))
GLUE_ORDER = ["rte", "mrpc", "cola", "stsb", "sst2"]
TASK_ORDER = GLUE_ORDER + ["ner", "ner_scratch", "wmt_en_ro", "wmt_tr_en"]
