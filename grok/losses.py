"""The losses a run can train with (train.loss), in the precision it asks for (train.loss_dtype).

Each loss takes logits (B, K, V) at the answer positions and their targets (B, K), skips the
IGNORE targets, and returns the mean over the scored answer tokens (`reduction="mean"`, what
training minimizes) or their sum (`"sum"`, what evaluation adds up over a split before dividing
by the tokens). The same loss is the one an evaluation reports as `train/loss`, `val/loss` and
`test/loss`, so those are always the quantity training minimizes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from grok.config import TrainConfig
from grok.data import IGNORE

Reduction = Literal["mean", "sum"]
Loss = Callable[[torch.Tensor, torch.Tensor, Reduction], torch.Tensor]


def _reduce(per_token: torch.Tensor, scored: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """Per-token losses (0 where not scored) summed, or averaged over the scored tokens."""
    total = per_token.sum()
    return total if reduction == "sum" else total / scored.sum()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: Reduction = "mean"):
    """-log softmax(x)_target: the loss of Power et al. 2022 (arXiv 2201.02177), torch's own."""
    flat = targets.flatten()
    return F.cross_entropy(logits.flatten(0, 1), flat, ignore_index=IGNORE, reduction=reduction)


def stablemax_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, reduction: Reduction = "mean"
) -> torch.Tensor:
    """-log StableMax(x)_target (Prieto et al. 2025, "Grokking at the Edge of Numerical
    Stability", arXiv 2501.04697): softmax with exp replaced by s(x) = x + 1 for x >= 0 and
    1 / (1 - x) for x < 0, so StableMax(x)_i = s(x_i) / sum_j s(x_j). s grows linearly, not
    exponentially, so a confident prediction is not rounded to a loss of exactly 0 (the
    paper's Softmax Collapse) until far larger logits."""
    x, t = logits.flatten(0, 1), targets.flatten()
    scored = t != IGNORE
    # x clamped in the branch for x < 0: where x >= 0 it would reach 1 / 0 at x = 1, and its
    # infinite derivative, though masked out, would turn the gradient into NaN.
    s = torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))
    picked = s.gather(1, torch.where(scored, t, 0)[:, None])[:, 0]
    per_token = torch.where(scored, s.sum(1).log() - picked.log(), 0)
    return _reduce(per_token, scored, reduction)


def mse(logits: torch.Tensor, targets: torch.Tensor, reduction: Reduction = "mean"):
    """Squared error between the logits and the target's one-hot vector, summed over the V
    classes and averaged over the scored tokens: Gromov 2023's loss ("Grokking modular
    arithmetic", arXiv 2301.02679: the sum over output components, the mean over examples)."""
    x, t = logits.flatten(0, 1), targets.flatten()
    scored = t != IGNORE
    one_hot = F.one_hot(torch.where(scored, t, 0), x.shape[1]).to(x.dtype)
    per_token = torch.where(scored, (x - one_hot).pow(2).sum(1), 0)
    return _reduce(per_token, scored, reduction)


LOSSES: dict[str, Loss] = {
    "cross_entropy": cross_entropy,
    "stablemax": stablemax_cross_entropy,
    "mse": mse,
}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def loss_function(cfg: TrainConfig) -> Loss:
    """train.loss with the logits cast to train.loss_dtype first (a no-op in float32)."""
    loss, dtype = LOSSES[cfg.loss], DTYPES[cfg.loss_dtype]

    def scored(logits: torch.Tensor, targets: torch.Tensor, reduction: Reduction = "mean"):
        return loss(logits.to(dtype), targets, reduction)

    return scored
