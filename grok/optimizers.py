"""The optimizer of a config, its learning-rate schedule, and weight decay toward the initial
weights (`optim.decay_target: init`).

Every optimizer is torch's own, fused (one kernel updates every parameter, where `foreach` runs
a dozen small ops per tensor). Weight decay toward zero is the optimizer's own; toward the
initial weights it is `DecayTowardInit`, applied at one point of the step, before the update.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from grok.config import Config, OptimConfig


def _adam_args(o: OptimConfig) -> dict:
    return {"betas": (o.beta1, o.beta2), "eps": o.eps}


# optim.name -> torch's class and the arguments its settings give, beside lr and weight_decay.
# Adam's weight_decay is coupled (L2 added to the gradient), AdamW's decoupled.
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], Callable[[OptimConfig], dict]]] = {
    "adamw": (torch.optim.AdamW, _adam_args),
    "adam": (torch.optim.Adam, _adam_args),
    "sgd": (torch.optim.SGD, lambda o: {"momentum": o.momentum}),
}


def make_optimizer(cfg: Config, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    """The config's optimizer; its own weight decay is off when the decay is toward init."""
    o = cfg.optim
    cls, args = OPTIMIZERS[o.name]
    wd = o.weight_decay if o.decay_target == "zero" else 0.0
    return cls(params, lr=o.lr, weight_decay=wd, fused=True, **args(o))


def lr_at(cfg: Config, step: int) -> float:
    """Linear warm-up over warmup_steps, then constant or cosine down to min_lr_ratio * lr."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    span = max(1, cfg.train.steps - o.warmup_steps)
    progress = min(1.0, (step - o.warmup_steps) / span)
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class DecayTowardInit:
    """Weight decay with the initial weights as its centre: w - w0 shrinks, not w. AdamW's is
    decoupled (applied to the weights before the step, as AdamW does); Adam's and SGD's is
    coupled (the gradient of (wd / 2) * |w - w0|^2 added to the gradient)."""

    def __init__(self, cfg: Config, params: list[torch.Tensor]):
        self.decoupled = cfg.optim.name == "adamw"
        self.weight_decay = cfg.optim.weight_decay
        self.params = params
        self.init = [p.detach().clone() for p in params]

    def apply(self, grads: list[torch.Tensor], lr: float) -> None:
        offsets = torch._foreach_sub(self.params, self.init)
        if self.decoupled:
            with torch.no_grad():
                torch._foreach_add_(self.params, offsets, alpha=-lr * self.weight_decay)
        else:
            torch._foreach_add_(grads, offsets, alpha=self.weight_decay)

    def state_dict(self) -> dict:
        return {"init_params": self.init}

    def load_state_dict(self, state: dict) -> None:
        self.init = [p.to(self.params[0].device) for p in state["init_params"]]


def make_decay_toward_init(cfg: Config, params: list[torch.Tensor]) -> DecayTowardInit | None:
    """The decay toward init a config asks for, or None (decay toward zero, or no decay)."""
    o = cfg.optim
    return DecayTowardInit(cfg, params) if o.decay_target == "init" and o.weight_decay > 0 else None
