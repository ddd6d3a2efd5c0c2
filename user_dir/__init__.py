"""An example --user-dir that extends addrop_fairseq with its own attribution method.

    fairseq-train DATA --user-dir user_dir --criterion addrop_ce \
        --addrop-attribution grad_x_attn ...

Importing ``addrop_fairseq`` registers the plugin (criterion, tasks, models); this module
only adds a method to the plugin's own registry.
"""
import torch

import addrop_fairseq  # noqa: F401  (registers addrop_ce and friends, whichever is imported first)
from addrop_fairseq.attribution import gradients, register_attribution


@register_attribution("grad_x_attn")
def gradient_times_attention(forward, grad=gradients, **_):
    """Gradient x input: A * dF/dA, i.e. integrated gradients with a single step.

    ``grad`` is the criterion's gradient function (loss-scaled for fp16/bf16 models); a map is
    None where its layer did not run (LayerDrop).
    """
    with torch.enable_grad():
        target, maps = forward(None)
        return [None if m is None else m.detach() * g for m, g in zip(maps, grad(target, maps))]
