"""``--criterion attendout``: AttendOut (Section 4, Algorithm 1 of "Not All Attention Is All
You Need"), the learned attention dropout, next to AD-DROP on the same models.

* D-Net (defender) is the model fairseq trains, with its regular dropout: checkpoints stay
  plain fairseq checkpoints of it.
* A-Net (attacker) is an identical copy (made when training starts) that also receives G-Net's
  scores-dropout masks (Eq. 3, a fully removed row attending uniformly, Eq. 4) on its selected
  self-attention layers, trained on the same mini-batches by an optimizer of fairseq's kind and
  settings at fairseq's current learning rate (its gradients normalised by the sample size as
  fairseq does; no gradient clipping). It lives in the criterion, which fairseq checkpoints
  and restores. Under ``--update-freq k`` A-Net accumulates its gradients over the k
  micro-batches and steps once, when fairseq steps D-Net (the task's ``optimizer_step``,
  :mod:`addrop_fairseq.training_hooks`): one A-Net update per D-Net update.
* G-Net (generator, :class:`addrop_fairseq.attendout_maths.GNet`) samples the masks; it has its own
  Adam (``--attendout-g-lr``) and is updated every ``--attendout-steps`` T updates (optimizer
  updates, not micro-batches; a dropout step, run at the start of the update after the T-th,
  before its first forward pass, so D-Net's parameters never change under a half-accumulated
  gradient): A-Net and
  D-Net are scored on T examples sampled from the validation set (``--attendout-eval``: or
  the training set, or a held-out split; scoring on the dev set, as the paper does, uses the
  dev set for training decisions), reward r_t = D's loss on example t minus A's
  (A better: positive), and Eq. 5 with a moving-average baseline over the T cached batches'
  actions; then both nets restart from one of them, A-Net with probability
  sigmoid((mean r) / temperature) (the better one likelier; Algorithm 1, lines 7-9).

Everything the game needs to continue (A-Net, G-Net and its optimizer, the baseline, the round's
cached batches and actions) is in the criterion's state dict, so a resumed run continues the
game exactly. Validation and inference use D-Net alone. Logged: A-Net's loss, the mean drop
probability per attacked layer (``attendout_rate_l{i}``), at dropout steps the mean reward,
the baseline and which net won (``attendout_attacker_won``).
"""
import copy
import math
import weakref
from dataclasses import dataclass, field
from typing import Dict, List

import torch

from fairseq import optim, utils
from fairseq.criterions import register_criterion
from fairseq.logging import metrics

from .. import attendout_maths as ao
from .. import sites, task_kinds
from .. import options as opts
from .site_criterion import SiteCriterion, StockLossConfig, unwrap


@dataclass
class AttendOutConfig(StockLossConfig):
    attendout_steps: int = field(default=20, metadata={"help": "T: updates per dropout step (G-Net update)"})
    attendout_eval: str = field(
        default="valid",
        metadata={"help": "the data split the T scoring examples come from: valid (the paper's choice), "
                          "train, or a held-out split of the data directory (e.g. heldout for heldout.*)"},
    )
    attendout_g_lr: float = field(default=1e-3, metadata={"help": "G-Net's Adam learning rate"})
    attendout_g_dim: int = field(default=64, metadata={"help": "G-Net's hidden size"})
    attendout_init_rate: float = field(default=0.1, metadata={"help": "G-Net's initial drop probability"})
    attendout_baseline_decay: float = field(default=0.9, metadata={"help": "the moving-average baseline's decay"})
    attendout_temperature: float = field(
        default=1.0, metadata={"help": "temperature of the choice of the net both restart from"}
    )
    attendout_layers: str = field(default="all", metadata={"help": "A-Net's attacked self-attention layers"})


def example_losses(task_kind, model, sample) -> torch.Tensor:
    with torch.no_grad():
        return task_kind.example_losses(task_kind.predict(model, sample)).float()


def open_rate(flag, value):
    if not 0.0 < value < 1.0:
        raise ValueError(f"{flag} must be in (0, 1), got {value}")


def decay(flag, value):
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{flag} must be in [0, 1), got {value}")


@register_criterion("attendout", dataclass=AttendOutConfig)
class AttendOutCriterion(SiteCriterion):
    OPTION_CHECKS = {
        "attendout_steps": opts.at_least(1),
        "attendout_layers": opts.check_layers,
        "attendout_g_lr": opts.positive,
        "attendout_g_dim": opts.at_least(1),
        "attendout_init_rate": open_rate,
        "attendout_baseline_decay": decay,
        "attendout_temperature": opts.positive,
    }

    def __init__(self, cfg: AttendOutConfig, task):
        super().__init__(task, cfg, "encoder-self", cfg.attendout_layers, "--attendout-layers", "attendout")
        self.cfg = cfg
        d = task.source_dictionary
        # G-Net's one block serves any number of layers: built now (its depth is set with the
        # sites), so the criterion has parameters and fairseq restores its state on resume
        self.gnet = ao.GNet(len(d), 1, dim=cfg.attendout_g_dim, padding_idx=d.pad(), init_rate=cfg.attendout_init_rate)
        self.g_opt = torch.optim.Adam(self.gnet.parameters(), lr=cfg.attendout_g_lr)
        self.baseline = ao.MovingAverage(cfg.attendout_baseline_decay)
        self.anet = None  # the attacker: a copy of D-Net, made when training starts
        self._d_net = None  # (a weak reference to) that D-Net: the game is played against it only
        self.a_opt = None
        self.a_sites = None
        # the dropout step's cached tokens and actions: one list of micro-batches per finished update
        self.round: List[List[Dict[str, torch.Tensor]]] = []
        self._open_update = None  # the update whose micro-batches A-Net is accumulating
        self._micro: List[Dict[str, torch.Tensor]] = []  # ... their cached tokens and actions
        self._a_sample_size = 0.0  # ... and their summed sample size (A-Net's gradient scale)
        self._told = False  # a train_step of the followed task has run (the trainer drives us)
        self._pending: Dict[str, object] = {}  # restored state waiting for A-Net / its optimizer

    # ------------------------------------------------------------------ setup

    def prepare(self, model):
        if any(p.dtype in (torch.float16, torch.bfloat16) for p in self.gnet.parameters()):
            raise ValueError("--criterion attendout does not support --fp16 / --bf16 (G-Net's and A-Net's "
                             "optimizers sit outside fairseq's mixed-precision optimizer); train in fp32")
        if self._d_net is not None and self._d_net() is not unwrap(model):
            raise ValueError("--criterion attendout: this criterion already plays its game against another model "
                             "(A-Net is a copy of that one); build a new criterion for each model")
        selected = super().prepare(model)
        if self.anet is None:
            self._d_net = weakref.ref(unwrap(model))
            self.anet = copy.deepcopy(unwrap(model))  # theta_A = theta_D
            for p in self.anet.parameters():
                p.grad = None  # not D's gradient, if it had one
            if "anet" in self._pending:  # a resumed game keeps its A-Net
                self.anet.load_state_dict(self._pending.pop("anet"))
            self.a_sites = self.select(self.anet)
            self.gnet.n_layers = len(self.a_sites)
            self.gnet.to(next(self.anet.parameters()).device)
            self.scoring_data()  # a missing split stops training before the first update
        return selected

    def attacker_optimizer(self, fairseq_opt):
        """fairseq's optimizer kind and settings for A-Net, at its current learning rate (built
        at the end of the first update, from the optimizer the task steps D-Net with)."""
        if self.a_opt is None:
            if {id(p) for p in fairseq_opt.params} & {id(p) for p in self.anet.parameters()}:
                raise RuntimeError("--criterion attendout: fairseq's optimizer holds A-Net's parameters (it was "
                                   "built after the criterion's first epoch began); A-Net would be stepped twice")
            self.a_opt = optim.build_optimizer(fairseq_opt.cfg, list(self.anet.parameters()))
            if "a_opt" in self._pending:
                self.a_opt.load_state_dict(self._pending.pop("a_opt"))
        self.a_opt.set_lr(fairseq_opt.get_lr())
        return self.a_opt

    # ------------------------------------------------------------------ the step

    def begin_train_step(self, update_num, ignore_grad):
        super().begin_train_step(update_num, ignore_grad)
        self._told = True

    def begin_update(self, model) -> Dict[str, float]:
        """At the first micro-batch of an update: the dropout step if T updates are done."""
        if self._micro:  # the previous update never reached its optimizer step (fairseq skipped it)
            self.anet.zero_grad(set_to_none=True)
            self._micro, self._a_sample_size = [], 0.0
        self._open_update = self.num_updates
        # before any forward of this update: the dropout step rewrites D-Net's parameters in
        # place, which must not happen under a graph fairseq back-propagates, nor between two
        # micro-batches of one update (D's gradient would be half taken at other parameters)
        return self.dropout_step(model) if len(self.round) >= self.cfg.attendout_steps else {}

    def end_update(self, optimizer, update_num):
        """fairseq stepped D-Net: A-Net's one step on the update's accumulated gradient, and the
        update joins the round."""
        if self.anet is None or not self._micro:
            return
        a_opt = self.attacker_optimizer(optimizer)
        a_opt.multiply_grads(1.0 / max(self._a_sample_size, 1.0))  # as fairseq normalises D's
        a_opt.step()
        a_opt.zero_grad()
        self.round.append(self._micro)
        self._micro, self._a_sample_size = [], 0.0

    def forward(self, model, sample, reduce=True):
        if not model.training:
            return self.plain_loss(model, sample, reduce)
        if not self._told:
            raise RuntimeError("--criterion attendout trains through the task's train_step and optimizer_step "
                               "(fairseq's trainer): A-Net steps when fairseq steps D-Net")
        self.prepare(model)
        game = self.begin_update(model) if self._open_update != self.num_updates else {}
        if self.ignore_grad:  # a dummy batch: D's loss is zeroed, A-Net does not train on it either
            return self.plain_loss(model, sample, reduce, attendout_steps=0, **game)
        self.anet.train()
        tokens = sample["net_input"]["src_tokens"]
        real = tokens.ne(self.task.source_dictionary.pad())
        with torch.no_grad():
            logits = self.gnet(tokens, real)
        valid_sq = real[:, None, :] & real[:, :, None]
        drops = [ao.sample_drops(lg, valid_sq) for lg in logits]
        rates = torch.stack([torch.sigmoid(lg)[valid_sq].mean() for lg in logits]).tolist()  # one host sync

        def edit(i, scores, valid):
            return ao.remove_scores(scores, valid, drops[i][:, None] & valid)

        # A-Net's gradient, on its own graph (fairseq's optimizer never sees its parameters),
        # accumulated over the update's micro-batches; end_update steps it
        with sites.editing(self.a_sites, edit):
            loss_a, sample_size_a, log_a = self.task_kind.loss(self.anet, sample, reduce=reduce)
        loss_a.backward()
        self._a_sample_size += float(sample_size_a)
        loss_d, sample_size, log = self.task_kind.loss(model, sample, reduce=reduce)
        self._micro.append({"tokens": tokens.detach(), "real": real, "drops": torch.stack(drops, 1)})
        log.update(attendout_steps=1, attendout_a_loss=float(loss_a.detach()),
                   **{f"attendout_rate_l{i}": r for i, r in enumerate(rates)}, **game)
        return loss_d, sample_size, log

    def scoring_data(self):
        split = self.cfg.attendout_eval
        if split not in self.task.datasets:
            try:
                self.task.load_dataset(split)
            except (FileNotFoundError, KeyError, TypeError, AssertionError) as e:  # sentence_prediction asserts
                raise ValueError(f"--attendout-eval {split}: cannot load that split of the data ({e})") from None
        return self.task.dataset(split)

    def dropout_step(self, model) -> Dict[str, float]:
        """Algorithm 1, lines 7-9: score A and D on T examples, update G-Net by Eq. 5, restart
        both nets from one of them."""
        T = len(self.round)
        dataset = self.scoring_data()
        picks = torch.randint(len(dataset), (T,)).tolist()
        batch = dataset.collater([dataset[i] for i in picks])
        batch = utils.move_to_cuda(batch) if next(self.anet.parameters()).is_cuda else batch
        d_net = unwrap(model)
        d_net.eval(), self.anet.eval()
        try:
            rewards = example_losses(self.task_kind, d_net, batch) - example_losses(self.task_kind, self.anet, batch)
        finally:
            d_net.train(), self.anet.train()
        b = self.baseline.value if self.baseline.count else float(rewards.mean())
        self.g_opt.zero_grad()
        lls = []
        for update in self.round:  # log P(a_t), recomputed with the graph, mean over the update's examples
            per_example = []
            for step in update:
                logits = self.gnet(step["tokens"], step["real"])
                valid_sq = step["real"][:, None, :] & step["real"][:, :, None]
                per_example.append(ao.action_log_likelihood(logits, list(step["drops"].unbind(1)),
                                                            [valid_sq] * len(logits)))
            lls.append(torch.cat(per_example).mean())
        ao.reinforce_loss(torch.stack(lls), rewards, b).backward()
        self.g_opt.step()
        self.g_opt.zero_grad(set_to_none=True)
        self.baseline.update(rewards)
        p_attacker = ao.attacker_probability(float(rewards.mean()), 0.0, self.cfg.attendout_temperature)
        attacker_won = bool(torch.rand(()) < p_attacker)
        with torch.no_grad():
            source, target = (self.anet, d_net) if attacker_won else (d_net, self.anet)
            for p_t, p_s in zip(target.parameters(), source.parameters()):
                p_t.copy_(p_s)
        self.round = []
        return {"attendout_rounds": 1, "attendout_reward": float(rewards.mean()),
                "attendout_baseline": self.baseline.value, "attendout_attacker_won": float(attacker_won)}

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)  # gnet.* and anet.* (module keys)
        state["attendout_game"] = {
            "g_opt": self.g_opt.state_dict(),
            "a_opt": None if self.a_opt is None else self.a_opt.state_dict(),
            "baseline": self.baseline.state_dict(),
            "round": [[{k: v.cpu() for k, v in step.items()} for step in update] for update in self.round],
        }
        return state

    def load_state_dict(self, state_dict, strict=True):
        state_dict = dict(state_dict)
        game = state_dict.pop("attendout_game", None)
        anet = {k[len("anet."):]: state_dict.pop(k) for k in [k for k in state_dict if k.startswith("anet.")]}
        result = super().load_state_dict(state_dict, strict=strict)
        if anet:
            if self.anet is None:  # A-Net is made when training starts: loaded then
                self._pending["anet"] = anet
            else:
                self.anet.load_state_dict(anet)
        if game is not None:
            self.g_opt.load_state_dict(game["g_opt"])
            if game["a_opt"] is not None:
                if self.a_opt is None:
                    self._pending["a_opt"] = game["a_opt"]
                else:
                    self.a_opt.load_state_dict(game["a_opt"])
            self.baseline.load_state_dict(game["baseline"])
            device = next(self.gnet.parameters()).device
            # (a round saved before --update-freq support: one micro-batch per update)
            self.round = [[{k: v.to(device) for k, v in step.items()} for step in
                           (update if isinstance(update, list) else [update])] for update in game["round"]]
        return result

    # ------------------------------------------------------------------ metrics

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        task_kinds.reduce_metrics(logging_outputs)
        rounds = sum(log.get("attendout_rounds", 0) for log in logging_outputs)
        if rounds:
            for k in ("attendout_reward", "attendout_baseline", "attendout_attacker_won"):
                metrics.log_scalar(k, sum(log.get(k, 0.0) for log in logging_outputs) / rounds, rounds, round=4)
        steps = sum(log.get("attendout_steps", 0) for log in logging_outputs)
        if steps == 0:
            return
        size = sum(log.get("sample_size", 0) for log in logging_outputs)
        a_loss = sum(utils.item(log.get("attendout_a_loss", 0)) for log in logging_outputs)
        metrics.log_scalar("attendout_a_loss", a_loss / max(size, 1) / math.log(2), size, round=3)
        keys = sorted({k for log in logging_outputs for k in log if k.startswith("attendout_rate_l")})
        for k in keys:
            metrics.log_scalar(k, sum(log.get(k, 0.0) for log in logging_outputs) / steps, steps, round=3)
