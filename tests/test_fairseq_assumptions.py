"""The fairseq internals the plugin relies on (written against fairseq-fixed==0.12.3.1). A
version bump that changes one must fail here with a message naming the assumption, rather
than silently bypass the seam (AD-DROP would then mask nothing) or the training hooks."""
import ast
import inspect
import textwrap

import fairseq
import torch
import torch.nn.functional as F
from fairseq.modules.multihead_attention import MultiheadAttention
from fairseq.tasks import FairseqTask
from fairseq.trainer import Trainer

from addrop_fairseq import fairseq_seam, sites

PIN = "fairseq-fixed==0.12.3.1"


def assumption(ok, what):
    assert ok, f"fairseq {fairseq.__version__} breaks an assumption of the plugin (written against {PIN}): {what}"


def params(fn):
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


def fast_path_problem(forward):
    """None, or what is wrong with ``forward``'s fast-path condition."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(forward)))
    conditions = [node.test for node in ast.walk(tree) if isinstance(node, ast.If)
                  and "multi_head_attention_forward" in ast.unparse(node)
                  and "multi_head_attention_forward" not in ast.unparse(node.test)]
    fast = [c for c in conditions if "incremental_state is None" in ast.unparse(c)]
    if not fast:
        return ("MultiheadAttention.forward has no `if ...: return F.multi_head_attention_forward(...)` "
                "fast path guarded by `incremental_state is None`")
    if "not self.skip_embed_dim_check" not in ast.unparse(fast[-1]):
        return ("MultiheadAttention.forward's fast-path condition no longer contains `not "
                "self.skip_embed_dim_check`: fairseq_seam sets it to force the explicit path")
    return None


def _changed_forward(self, query, key, value, incremental_state=None):  # a fairseq that dropped the check
    if incremental_state is None and not self.onnx_trace:
        return F.multi_head_attention_forward(query, key, value)
    return query


def test_skip_embed_dim_check_is_in_the_fast_path_condition():
    problem = fast_path_problem(MultiheadAttention.forward)
    assumption(problem is None, problem)
    assert "skip_embed_dim_check" in fast_path_problem(_changed_forward)  # the check would notice


def test_the_forced_explicit_path_reaches_the_seams(monkeypatch):
    """With skip_embed_dim_check set (what the seam does), training-mode forward computes the
    scores itself: apply_sparse_mask sees [B*H, T, S] scores and dropout_module the softmax."""
    torch.manual_seed(0)
    attn = MultiheadAttention(8, 2, dropout=0.1, self_attention=True).train()
    fast, seen = [], {}
    monkeypatch.setattr(torch.nn.functional, "multi_head_attention_forward",
                        lambda *a, **k: fast.append(1) or (_ for _ in ()).throw(AssertionError("fast path")))
    stock_mask = MultiheadAttention.apply_sparse_mask
    monkeypatch.setattr(MultiheadAttention, "apply_sparse_mask",
                        lambda self, w, *a: seen.setdefault("scores", w.shape) and stock_mask(self, w, *a))
    attn.dropout_module.register_forward_pre_hook(lambda _m, args: seen.setdefault("probs", args[0]))
    attn.skip_embed_dim_check = True
    x = torch.randn(5, 3, 8)  # T x B x C
    attn(x, x, x, key_padding_mask=torch.zeros(3, 5, dtype=torch.bool))
    assumption(not fast, "MultiheadAttention.forward takes F.multi_head_attention_forward although "
                         "skip_embed_dim_check is set")
    assumption(seen.get("scores") == (6, 5, 5),
               f"apply_sparse_mask is not called with the [B*H, T, S] scores on the explicit path ({seen.get('scores')})")
    probs = seen.get("probs")
    assumption(probs is not None and probs.shape == (6, 5, 5) and torch.allclose(probs.sum(-1), torch.ones(6, 5)),
               "dropout_module is not applied to the [B*H, T, S] softmax probabilities")


def test_the_seam_subclass_keeps_multihead_attentions_signatures():
    assumption(params(fairseq_seam._AttentionSeamMixin.forward) == params(MultiheadAttention.forward),
               f"MultiheadAttention.forward's parameters changed: {params(MultiheadAttention.forward)}; "
               "fairseq_seam._AttentionSeamMixin.forward passes the 0.12.3.1 ones on positionally")
    assumption([n for n, _ in params(MultiheadAttention.apply_sparse_mask)]
               == ["self", "attn_weights", "tgt_len", "src_len", "bsz"],
               "MultiheadAttention.apply_sparse_mask(attn_weights, tgt_len, src_len, bsz) changed")


def test_the_class_swap_round_trips():
    attn = MultiheadAttention(8, 2, self_attention=True)
    keys = list(attn.state_dict())
    assumption(not hasattr(MultiheadAttention, "__slots__") or "__dict__" in MultiheadAttention.__slots__,
               "MultiheadAttention has __slots__: the seam swaps module.__class__ for a subclass")
    site = sites.AttentionSite("encoder.layers.0.self_attn", "encoder-self", 0, attn, fairseq_seam.SEAM)
    undo = fairseq_seam.SEAM.attach(attn)
    assumption(isinstance(attn, fairseq_seam._AttentionSeamMixin) and isinstance(attn, MultiheadAttention),
               "module.__class__ could not be swapped for the seam's subclass")
    fairseq_seam.SEAM.detach(attn, undo)
    assumption(type(attn) is MultiheadAttention and list(attn.state_dict()) == keys
               and not attn.dropout_module._forward_hooks and not attn.dropout_module._forward_pre_hooks,
               "the stock class and hooks did not come back after the seam's context")
    assert site.module is attn


TASK_METHODS = {
    "begin_epoch": ["self", "epoch", "model"],
    "train_step": ["self", "sample", "model", "criterion", "optimizer", "update_num", "ignore_grad"],
    "optimizer_step": ["self", "optimizer", "model", "update_num"],
}


def task_problems(task_class):
    for name, names in TASK_METHODS.items():
        got = [n for n, _ in params(getattr(task_class, name))]
        if got != names:
            yield (f"FairseqTask.{name}{tuple(got[1:])} changed; training_hooks wraps "
                   f"{name}{tuple(names[1:])} on the task instance")


def test_the_task_methods_the_training_hooks_wrap():
    problems = list(task_problems(FairseqTask))
    assumption(not problems, "; ".join(problems))

    class Changed(FairseqTask):
        def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, scaler=None):
            pass

    assert "FairseqTask.train_step" in next(task_problems(Changed))  # the check would notice
    source = inspect.getsource(Trainer.train_step)
    step, opt = source.find("self.task.train_step("), source.find("self.task.optimizer_step(")
    assumption(0 <= step < opt, "Trainer.train_step no longer calls self.task.train_step(...) for each micro-batch "
                                "and then self.task.optimizer_step(...): the criterion's update clock relies on it")
    assumption("update_num=self.get_num_updates()" in source[step:opt + 200],
               "Trainer.train_step no longer passes update_num=self.get_num_updates() to the task")
    assumption("self.task.begin_epoch(" in inspect.getsource(Trainer.begin_epoch),
               "Trainer.begin_epoch no longer calls self.task.begin_epoch(epoch, model)")
