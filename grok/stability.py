"""Numerical-stability measures (analysis.stability), after Prieto et al. 2025, "Grokking at the
Edge of Numerical Stability" (arXiv 2501.04697), at each full evaluation:

- `stability/sc_fraction`: the share of training examples whose loss in float32 softmax
  cross-entropy is exactly 0 (on every answer token), whatever train.loss is: the paper's
  Softmax Collapse, where the correct logit so dominates that float32 rounds the softmax to a
  one-hot vector and the example's gradient to zero.
- `stability/nlm_cosine`: the cosine between the gradient of the run's loss over the whole
  training split and the weights, all parameters flattened into one vector. Near -1 the
  gradient step mostly scales the weights up, the paper's naive loss minimization (NLM):
  the logits grow and the predictions stay the same.
- `norm/<layer>`: the L2 norm of each module's own parameters, named by the module tree
  (`norm/tok_emb`, `norm/blocks.0.attn.qkv`, `norm/head`, ...).

The model is read in eval mode (no dropout, so no random numbers drawn) and its `.grad`s are left
alone: a run with the measures trains exactly as one without.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from grok.data import IGNORE, Split


def layer_norms(model: nn.Module) -> dict[str, float]:
    """`norm/<module name>`: the L2 norm of each module's own parameters."""
    out = {}
    for name, module in model.named_modules():
        own = [p.detach() for p in module.parameters(recurse=False)]
        if own:
            out[f"norm/{name or 'model'}"] = float(
                torch.linalg.vector_norm(torch.cat([p.reshape(-1) for p in own]))
            )
    return out


def stability_metrics(
    model: nn.Module, split: Split, loss: Callable[..., torch.Tensor], batch_size: int
) -> dict[str, float]:
    """The measures of the module docstring over `split` (the training split), in batches of
    `batch_size` rows; `loss` is the run's (grok/losses.py), called with reduction "sum"."""
    was_training = model.training
    model.eval()
    params = list(model.parameters())
    grad = [torch.zeros_like(p) for p in params]  # of the summed loss: the cosine needs no mean
    collapsed = examples = 0
    for start in range(0, len(split), batch_size):
        rows = slice(start, start + batch_size)
        pad = None if split.pad_mask is None else split.pad_mask[rows]
        with torch.enable_grad():
            logits = model(split.x[rows], cols=split.cols, pad_mask=pad)
            targets = split.y[rows][:, split.cols]
            part = torch.autograd.grad(loss(logits, targets, "sum"), params, materialize_grads=True)
        torch._foreach_add_(grad, part)
        scored = targets != IGNORE
        per_token = F.cross_entropy(
            logits.detach().float().flatten(0, 1),
            targets.flatten(),
            ignore_index=IGNORE,
            reduction="none",
        ).view_as(targets)  # 0 at the IGNORE targets
        answered = scored.any(1)
        collapsed += int(((per_token == 0).all(1) & answered).sum())
        examples += int(answered.sum())
    model.train(was_training)
    g = torch.cat([t.reshape(-1) for t in grad])
    w = torch.cat([p.detach().reshape(-1) for p in params])
    cosine = torch.dot(g, w) / (torch.linalg.vector_norm(g) * torch.linalg.vector_norm(w))
    return {
        "stability/sc_fraction": collapsed / examples if examples else float("nan"),
        "stability/nlm_cosine": float(cosine),
        **layer_norms(model),
    }
