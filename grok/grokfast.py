"""Grokfast gradient filters (Lee et al. 2024): amplify the slow component of the gradients.

Before each optimizer step the gradient g becomes g + lamb * s, where s is a low-pass filter of
the gradients seen so far: an exponential moving average (`ema`) or the mean of the last `window`
gradients (`ma`, applied once the window is full). Their state is part of a checkpoint.
"""

from __future__ import annotations

import torch

from grok.config import GrokfastConfig

DEFAULT_LAMB = {"ema": 2.0, "ma": 5.0}  # the paper's values for its modular tasks


class EMAFilter:
    def __init__(self, alpha: float, lamb: float):
        self.alpha, self.lamb = alpha, lamb
        self.ema: list[torch.Tensor] | None = None

    def apply(self, grads: list[torch.Tensor]) -> None:
        """Replace each gradient in place by g + lamb * ema(g)."""
        if self.ema is None:
            self.ema = [g.detach().clone() for g in grads]
        else:
            torch._foreach_mul_(self.ema, self.alpha)
            torch._foreach_add_(self.ema, grads, alpha=1 - self.alpha)
        torch._foreach_add_(grads, self.ema, alpha=self.lamb)

    def state_dict(self) -> dict:
        return {"ema": self.ema}

    def load_state_dict(self, state: dict) -> None:
        self.ema = state["ema"]


class MAFilter:
    """Mean of the last `window` gradients, kept as a ring buffer of flattened gradients."""

    def __init__(self, window: int, lamb: float):
        self.window, self.lamb = window, lamb
        self.ring: torch.Tensor | None = None  # (window, n_params)
        self.total: torch.Tensor | None = None  # running sum of the ring's rows
        self.count = 0  # gradients seen

    def apply(self, grads: list[torch.Tensor]) -> None:
        flat = torch.cat([g.reshape(-1) for g in grads])
        if self.ring is None:
            self.ring = flat.new_zeros(self.window, flat.numel())
            self.total = flat.new_zeros(flat.numel())
        slot = self.count % self.window
        self.total += flat - self.ring[slot]
        self.ring[slot] = flat
        self.count += 1
        if slot == self.window - 1:  # re-add now and then, so rounding cannot accumulate
            self.total = self.ring.sum(0)
        if self.count < self.window:
            return
        mean = self.total / self.window
        torch._foreach_add_(
            grads,
            [m.view_as(g) for m, g in zip(mean.split([g.numel() for g in grads]), grads)],
            alpha=self.lamb,
        )

    def state_dict(self) -> dict:
        return {"ring": self.ring, "total": self.total, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.ring, self.total, self.count = state["ring"], state["total"], state["count"]


def make_filter(cfg: GrokfastConfig) -> EMAFilter | MAFilter | None:
    if cfg.kind == "none":
        return None
    lamb = DEFAULT_LAMB[cfg.kind] if cfg.lamb is None else cfg.lamb
    return EMAFilter(cfg.alpha, lamb) if cfg.kind == "ema" else MAFilter(cfg.window, lamb)
