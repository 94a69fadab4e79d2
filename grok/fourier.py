"""Progress measures of grokking modular arithmetic: how far the Fourier algorithm has formed.

After Nanda et al. 2023 ("Progress measures for grokking via mechanistic interpretability").
An operation's table is read in its natural coordinates, the cyclic group in which `a op b` is
x + y or x - y: Z_p with x = a for + and -, and the multiplicative group Z_p^* (order p - 1) with
x = log_g a for * and /, g the smallest primitive root. Residue 0 is outside Z_p^*, so for * and
/ the equations with a = 0 or b = 0 are left out of the measures. Over a group of order n,
frequency k (1 <= k <= n // 2) is the wave of angle w_k x, w_k = 2 pi k / n.

Reported at each full evaluation (see docs/progress.md for the definitions and their cost):
`progress/fourier_share`, `progress/fourier_gini`, `progress/key_freq_1..top_k`,
`progress/restricted_loss` (and `progress/restricted_test_loss`, `progress/restricted_test_acc`:
on the test split alone) and `progress/excluded_loss`. What they cost:
`python -m benchmarks.bench --progress-cost` (benchmarks/progress_cost.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from grok.config import Config
from grok.data import Split

# The operations whose table is a cyclic group's, and the sign of y in a op b = x + sign * y.
SIGNS = {"+": 1, "-": -1, "*": 1, "/": -1}
MULTIPLICATIVE = ("*", "/")


# ---------------------------------------------------------------- natural coordinates


def primitive_root(p: int) -> int:
    """The smallest generator of Z_p^*, the multiplicative group mod a prime p."""
    n = p - 1
    primes = [q for q in range(2, n + 1) if n % q == 0 and all(q % d for d in range(2, q))]
    return next(g for g in range(1, p) if all(pow(g, n // q, p) != 1 for q in primes))


def group_residues(op: str, p: int) -> list[int]:
    """The residue at each group coordinate x = 0..n-1: x itself, or g^x for * and /."""
    if op in MULTIPLICATIVE:
        g = primitive_root(p)
        return [pow(g, x, p) for x in range(p - 1)]
    return list(range(p))


# ---------------------------------------------------------------- the embedding's spectrum


def frequency_energy(rows: torch.Tensor) -> torch.Tensor:
    """Squared norm of `rows` (n, d), one row per group element in order, at each frequency
    k = 1..n//2 (index k - 1), the mean row removed. The cosine and sine of a frequency count
    together; the energies add up to the squared norm of the centred rows."""
    n = rows.shape[0]
    centred = rows.double() - rows.double().mean(0)
    spectrum = torch.fft.rfft(centred, dim=0)  # (n // 2 + 1, d); bin 0 is the (zero) mean
    energy = spectrum.abs().pow(2).sum(1)[1:] * (2 / n)
    if n % 2 == 0:
        energy[-1] /= 2  # k = n / 2 has a cosine only
    return energy


def top_share(energy: torch.Tensor, k: int) -> float:
    """The share of the total energy in the `k` strongest frequencies."""
    return float(energy.topk(k).values.sum() / energy.sum())


def gini(values: torch.Tensor) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, (m - 1) / m when one holds
    everything."""
    v = values.double().sort().values
    m = len(v)
    rank = torch.arange(1, m + 1, dtype=v.dtype)
    return float(((2 * rank - m - 1) * v).sum() / (m * v.sum()))


def key_frequencies(energy: torch.Tensor, k: int) -> list[int]:
    """The `k` strongest frequencies, strongest first."""
    return [int(i) + 1 for i in energy.topk(k).indices]


# ---------------------------------------------------------------- restricted and excluded logits


def wave_basis(s: torch.Tensor, n: int, freqs: list[int]) -> torch.Tensor:
    """An orthonormal basis (N, m) of the waves cos(w_k s) and sin(w_k s) over the N equations
    whose group value x +- y is `s` (the sine of k = n / 2 vanishes and is left out)."""
    angle = (2 * math.pi / n) * s.double()[:, None] * torch.tensor(freqs, dtype=torch.float64)
    sines = [i for i, k in enumerate(freqs) if 2 * k != n]
    waves = torch.cat([torch.cos(angle), torch.sin(angle[:, sines])], dim=1)
    return torch.linalg.qr(waves).Q


def wave_part(logits: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """The logits' component along `basis`, for each output column, after removing their mean
    over the table."""
    centred = logits - logits.mean(0, keepdim=True)
    return basis @ (basis.T @ centred)


def restricted_logits(logits: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """The logits' mean over the table plus their component along the key waves only."""
    return logits.mean(0, keepdim=True) + wave_part(logits, basis)


def excluded_logits(logits: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """The logits less their component along the key waves."""
    return logits - wave_part(logits, basis)


# ---------------------------------------------------------------- the trainer's entry point


@dataclass
class Table:
    """The equations of the whole table (all splits) that lie in the group, as tensors."""

    x: torch.Tensor  # (N, T) model inputs
    cols: torch.Tensor  # the answer position
    target: torch.Tensor  # (N,) answer token ids
    s: torch.Tensor  # (N,) group coordinate of the answer, x +- y, not reduced
    train: torch.Tensor  # (N,) bool: in the training split
    test: torch.Tensor  # (N,) bool: in the test split


def build_table(op: str, p: int, splits: dict[str, Split]) -> Table:
    coord = {r: x for x, r in enumerate(group_residues(op, p))}
    xs, targets, s, train, test = [], [], [], [], []
    for name, split in splits.items():
        rows = [i for i, e in enumerate(split.examples) if e.a in coord and e.b in coord]
        if not rows:  # an empty split (val_fraction 0) has no answer position either
            continue
        rows_t = torch.tensor(rows, device=split.x.device)
        xs.append(split.x[rows_t])
        targets.append(split.y[rows_t, split.cols[0]])
        s += [coord[split.examples[i].a] + SIGNS[op] * coord[split.examples[i].b] for i in rows]
        train += [name == "train"] * len(rows)
        test += [name == "test"] * len(rows)
    cols = splits["train"].cols  # one answer token, at the same position in every equation
    return Table(
        torch.cat(xs),
        cols,
        torch.cat(targets),
        torch.tensor(s),
        torch.tensor(train),
        torch.tensor(test, dtype=torch.bool),
    )


@torch.inference_mode()
def table_logits(model: nn.Module, table: Table, batch_size: int) -> torch.Tensor:
    """The model's answer logits (N, V) for every equation of the table, in float64 on the CPU."""
    model.eval()
    parts = [
        model(table.x[i : i + batch_size], cols=table.cols)[:, 0]
        for i in range(0, len(table.x), batch_size)
    ]
    return torch.cat(parts).double().cpu()


def progress_metrics(model: nn.Module, splits: dict[str, Split], cfg: Config) -> dict[str, float]:
    """The progress measures of the model now, as metrics (see docs/progress.md)."""
    op, p, top_k = cfg.task.op, cfg.task.p, cfg.analysis.top_k
    residues = group_residues(op, p)
    with torch.no_grad():
        rows = model.tok_emb.weight[residues].detach().cpu()
    energy = frequency_energy(rows)
    freqs = key_frequencies(energy, top_k)
    metrics: dict[str, float] = {
        "progress/fourier_share": top_share(energy, top_k),
        "progress/fourier_gini": gini(energy.sqrt()),
    }
    metrics.update({f"progress/key_freq_{i}": k for i, k in enumerate(freqs, 1)})
    table = build_table(op, p, splits)
    logits = table_logits(model, table, cfg.eval.batch_size)
    target = table.target.cpu()
    basis = wave_basis(table.s, len(residues), freqs)
    restricted = restricted_logits(logits, basis)
    metrics["progress/restricted_loss"] = float(F.cross_entropy(restricted, target))
    if table.test.any():  # the same on the test split alone: comparable with test loss and acc
        held, held_target = restricted[table.test], target[table.test]
        metrics["progress/restricted_test_loss"] = float(F.cross_entropy(held, held_target))
        right = held.argmax(-1) == held_target
        metrics["progress/restricted_test_acc"] = float(right.double().mean())
    kept = excluded_logits(logits, basis)[table.train]
    metrics["progress/excluded_loss"] = float(F.cross_entropy(kept, target[table.train]))
    return metrics
