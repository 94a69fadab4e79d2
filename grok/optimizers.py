"""The optimizer of a config, its learning-rate schedule, and what acts on the gradients or the
weights at one point of each step: weight decay toward the initial weights, ⊥Grad, a fixed norm.

Every optimizer is torch's own, fused where torch has it (one kernel updates every parameter,
where `foreach` runs a dozen small ops per tensor); `muon` pairs torch's Muon with AdamW. Weight
decay toward zero is the optimizer's own. A step of the Trainer: the loss's gradients, then
`OrthogonalGrad`, the Grokfast filter and `DecayTowardInit` change them, the optimizer steps,
and `FixedNorm` rescales the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

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


class MuonWithAdamW:
    """`optim.name: muon`: Muon (Jordan et al. 2024; torch.optim.Muon, momentum 0.95, Nesterov,
    5 Newton-Schulz steps) on the 2-D weight matrices inside the transformer blocks, AdamW on
    everything else, as Muon's authors prescribe. One optimizer to the Trainer: `param_groups`
    are Muon's then AdamW's, and `state_dict` holds both, so a checkpoint resumes both."""

    def __init__(self, muon: torch.optim.Muon, adamw: torch.optim.AdamW):
        self.parts = {"muon": muon, "adamw": adamw}

    @property
    def param_groups(self) -> list[dict]:
        return [group for part in self.parts.values() for group in part.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for part in self.parts.values():
            part.step()

    def state_dict(self) -> dict:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, part in self.parts.items():
            part.load_state_dict(state[name])


def muon_split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(Muon's parameters, AdamW's), each in the model's order: the 2-D weights between the
    input and output layers (the transformer's attention qkv and proj and its MLP's fc and proj;
    the MLP model's hidden layer); and the token and position embeddings, the head
    (unembedding), the LayerNorms and every bias."""
    outer = ("tok_emb.", "pos_emb.", "head.")  # what Muon's authors leave to AdamW
    hidden = [p for n, p in model.named_parameters() if p.ndim == 2 and not n.startswith(outer)]
    chosen = {id(p) for p in hidden}
    return hidden, [p for p in model.parameters() if id(p) not in chosen]


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer | MuonWithAdamW:
    """The config's optimizer; its own weight decay is off when the decay is toward init.
    Muon's matrices get optim.muon_lr (Muon's learning rate, about 20x AdamW's) and a weight
    decay chosen so that they shrink by lr * weight_decay a step, as AdamW's parameters do: torch's
    Muon multiplies its decay by its own rate. `lr_scale` keeps the two rates' ratio through the
    schedule (set_lr)."""
    o = cfg.optim
    wd = o.weight_decay if o.decay_target == "zero" else 0.0
    if o.name == "muon":
        hidden, rest = muon_split(model)
        scale = o.muon_lr / o.lr
        muon = torch.optim.Muon(
            [{"params": hidden, "lr_scale": scale}], lr=o.muon_lr, weight_decay=wd / scale
        )
        return MuonWithAdamW(muon, torch.optim.AdamW(rest, lr=o.lr, weight_decay=wd, fused=True))
    cls, args = OPTIMIZERS[o.name]
    return cls(list(model.parameters()), lr=o.lr, weight_decay=wd, fused=True, **args(o))


def set_lr(optimizer: torch.optim.Optimizer | MuonWithAdamW, lr: float) -> None:
    """This step's rate in every param group: `lr`, times the group's `lr_scale` if it has one."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


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


class OrthogonalGrad:
    """⊥Grad (Prieto et al. 2025, arXiv 2501.04697, section 5): each parameter tensor's gradient
    g loses its component along the tensor w, g_perp = g - (w.g / w.w) w, and is rescaled to
    the norm g had, g_perp |g| / |g_perp|; the paper's code adds 1e-30 to both denominators.
    The update then cannot grow the weights along themselves, the naive-loss-minimization
    direction that scales the logits up toward Softmax Collapse."""

    def __init__(self, params: list[torch.Tensor]):
        self.params = params

    @torch.no_grad()
    def apply(self, grads: list[torch.Tensor]) -> None:
        """Replace each gradient in place by its rescaled component orthogonal to its weights."""
        for w, g in zip(self.params, grads):
            w_flat, g_flat = w.reshape(-1), g.reshape(-1)
            norm = torch.linalg.vector_norm(g)
            along = torch.dot(w_flat, g_flat) / (torch.dot(w_flat, w_flat) + 1e-30)
            g.addcmul_(w, along, value=-1)
            g.mul_(norm / (torch.linalg.vector_norm(g) + 1e-30))


class FixedNorm:
    """Omnigrok's constraint (Liu et al. 2022, arXiv 2210.01117): after every optimizer step,
    and once before the first, all the parameters together are rescaled to the L2 norm `norm`,
    so training moves on that sphere and the initial norm is `norm` too."""

    def __init__(self, params: list[torch.Tensor], norm: float):
        self.params, self.norm = params, norm

    @torch.no_grad()
    def apply(self) -> None:
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self.params)))
        torch._foreach_mul_(self.params, self.norm / total)


def make_fixed_norm(cfg: Config, params: list[torch.Tensor]) -> FixedNorm | None:
    """The fixed norm a config asks for, applied once to the initial weights; or None."""
    if cfg.optim.fixed_norm is None:
        return None
    fixed = FixedNorm(params, cfg.optim.fixed_norm)
    fixed.apply()
    return fixed
