"""The local learning coefficient (LLC) of the model now, by devinterp's SGLD estimator.

Lau et al. 2023 ("Quantifying degeneracy in singular models via the learning coefficient",
arXiv 2308.12108): with L_n the mean loss over the n training examples and w* the weights now,
the estimate is n beta (E[L_n(w)] - L_n(w*)), the expectation over SGLD draws from the posterior
at inverse temperature beta, localized around w* by a pull of strength gamma. A lower LLC is a
simpler (more degenerate) solution; along a grokking run it tracks the switch from memorizing to
the general algorithm. devinterp (`devinterp.slt.llc.llc`, 2.x) runs the chains; this module
gives it the training split and the loss the trainer uses on it (cross-entropy over the answer
tokens), on a copy of the model, with its own seeds: the run's random streams, weights and
optimizer are left as they were, and the same weights and settings give the same estimate.
Settings: the `llc_*` keys of the `analysis` section (docs/lab.md).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import logging
import random
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from grok.config import Config
from grok.data import IGNORE, Split

log = logging.getLogger(__name__)


@contextlib.contextmanager
def own_random_state(device: torch.device) -> Iterator[None]:
    """Python's, numpy's and torch's generators (the device's too) as they were, after the block."""
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    random.setstate(python)
    np.random.set_state(numpy)


@contextlib.contextmanager
def objects_frozen() -> Iterator[None]:
    """devinterp collects garbage before and after each chain; with torch, Ray and transformers
    loaded a full collection takes a second or more. Inside the block it scans only the objects
    made there (gc.freeze); after it, every object is collectable again."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def llc_metrics(
    model: nn.Module, split: Split, cols: slice | torch.Tensor, cfg: Config
) -> dict[str, float]:
    """`llc/mean` and `llc/std` (over the chains) of `model` on the rows of `split` (training)."""
    from devinterp.slt.llc import llc  # imports transformers: only when analysis.llc is on

    a = cfg.analysis
    device = next(model.parameters()).device
    answers = split.y[:1, cols].shape[1]
    # devinterp draws batches of token rows and asks for one loss per predicted token: each row
    # here is an example's number, repeated so that it "predicts" as many tokens as it has answers.
    rows = [{"input_ids": torch.full((answers + 1,), i)} for i in range(len(split))]

    def answer_losses(net: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        r = ids[:, 0]
        pad = None if split.pad_mask is None else split.pad_mask[r]
        logits = net(split.x[r], cols=cols, pad_mask=pad)  # (B, K, V)
        targets = split.y[r][:, cols]
        return F.cross_entropy(
            logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none"
        )  # (B, K)

    probe = copy.deepcopy(model)
    for p in probe.parameters():
        p.grad = None
    with (
        own_random_state(device),
        objects_frozen(),
        tempfile.TemporaryDirectory() as tmp,
        contextlib.redirect_stderr(io.StringIO()),  # its progress bars
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        result = llc(
            probe,
            rows,
            {},
            lr=a.llc_lr,
            n_beta=a.llc_n_beta,
            localization=a.llc_gamma,
            num_chains=a.llc_chains,
            num_draws=a.llc_draws,
            batch_size=min(a.llc_batch_size, len(split)),
            init_seed=a.llc_seed,
            device=str(device),
            output_path=Path(tmp) / "samples.zarr",
            loss_fn=answer_losses,
        )
        mean, std = float(result.llc_mean), float(result.llc_std)
    failed = [str(w.message) for w in caught if "Chain failed" in str(w.message)]
    if failed:  # a chain whose loss went infinite: its draws are not samples
        log.warning("LLC estimate dropped (NaN): %s; lower analysis.llc_lr", failed[0])
        return {"llc/mean": float("nan"), "llc/std": float("nan")}
    return {"llc/mean": mean, "llc/std": std}
