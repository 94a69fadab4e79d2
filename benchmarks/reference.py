"""The reference the benchmark measures the project against: the paper's model and recipe trained
the way the popular plain-PyTorch reimplementation (danielmamay/grokking) does, on the project's
data.

Its choices, written here in our own code: token and position embeddings, post-LayerNorm blocks
of nn.MultiheadAttention called as its defaults have it (sequence first, attention weights
returned), x = ln(x + attn(x)) then x = ln(x + mlp(x)); logits at every position, of which the
last (the `=` of `a op b =`) is read; batches from a shuffled pass over the training set (a
DataLoader); AdamW with a linear warm-up (LambdaLR); and every REFERENCE_EVAL_EVERY steps a full
evaluation, loss and accuracy, of the training set and of the held-out rest, in batches.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from grok.train import Trainer

REFERENCE_EVAL_EVERY = 100


class PostNormBlock(nn.Module):
    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads)
        self.ln_attn = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))
        self.ln_mlp = nn.LayerNorm(d)

    def forward(self, x, mask):  # x: (T, B, C)
        x = self.ln_attn(x + self.attn(x, x, x, attn_mask=mask)[0])
        return self.ln_mlp(x + self.mlp(x))


class ReferenceModel(nn.Module):
    def __init__(self, vocab: int, d: int, heads: int, ff: int, layers: int, max_len: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(PostNormBlock(d, heads, ff) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx):
        """Logits (B, V) at the last position; the head runs at every position."""
        T = idx.shape[1]
        x = (self.tok(idx) + self.pos(torch.arange(T, device=idx.device))).transpose(0, 1)
        mask = torch.full((T, T), float("-inf"), device=idx.device).triu(1)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln_f(x))[-1]


class ReferenceLoop:
    """The reference's training step and evaluation, on the data of a project `Trainer`."""

    def __init__(self, trainer: Trainer):
        torch.manual_seed(0)
        m = trainer.cfg.model
        self.device = trainer.device
        train = trainer.splits["train"]
        held_out = [trainer.splits[k] for k in ("val", "test")]
        batch = trainer.batch_size
        self.loader = DataLoader(TensorDataset(train.x, train.y[:, -1]), batch, shuffle=True)
        self.eval_loaders = [
            DataLoader(TensorDataset(train.x, train.y[:, -1]), batch),
            DataLoader(
                TensorDataset(
                    torch.cat([s.x for s in held_out]), torch.cat([s.y[:, -1] for s in held_out])
                ),
                batch,
            ),
        ]
        self.batches = iter(self.loader)
        vocab = trainer.tokenizer.vocab_size
        self.model = ReferenceModel(vocab, m.d_model, m.n_head, m.d_ff, m.n_layer, m.max_len)
        self.model.to(self.device)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=1.0
        )
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(s / 10, 1))

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:  # a new epoch: a new shuffle
            self.batches = iter(self.loader)
            return next(self.batches)

    def train_step(self) -> None:
        self.model.train()
        x, y = self.next_batch()
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.schedule.step()

    @torch.no_grad()
    def evaluate(self) -> list[tuple[float, float]]:
        """(loss, accuracy) of the training set and of the held-out rest."""
        self.model.eval()
        out = []
        for loader in self.eval_loaders:
            loss, correct, n = 0.0, 0, 0
            for x, y in loader:
                logits = self.model(x)
                loss += F.cross_entropy(logits, y, reduction="sum").item()
                correct += int((logits.argmax(-1) == y).sum())
                n += len(y)
            out.append((loss / n, correct / n))
        return out
