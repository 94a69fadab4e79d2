"""The reference the benchmark measures the project against: the same transformer and task,
trained the plain way.

Written as a straightforward first implementation would be: nn.MultiheadAttention, logits at
every position, torch.optim.AdamW with the paper's settings, random batches with replacement,
and an evaluation of the full train and test splits every REFERENCE_EVAL_EVERY steps.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from grok.train import Trainer

REFERENCE_EVAL_EVERY = 100


class ReferenceModel(nn.Module):
    """The same transformer written the plain way: full-sequence logits, nn.MultiheadAttention."""

    def __init__(
        self,
        vocab: int,
        d: int = 128,
        heads: int = 4,
        ff: int = 512,
        layers: int = 2,
        max_len: int = 64,
    ):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.ln1 = nn.ModuleList(nn.LayerNorm(d) for _ in range(layers))
        self.attn = nn.ModuleList(
            nn.MultiheadAttention(d, heads, batch_first=True) for _ in range(layers)
        )
        self.ln2 = nn.ModuleList(nn.LayerNorm(d) for _ in range(layers))
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d)) for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=idx.device), 1)
        for ln1, attn, ln2, mlp in zip(self.ln1, self.attn, self.ln2, self.mlp):
            h = ln1(x)
            x = x + attn(h, h, h, attn_mask=mask, need_weights=False)[0]
            x = x + mlp(ln2(x))
        return self.head(self.ln_f(x))  # (B, T, V): every position


class ReferenceLoop:
    """The reference's training step and evaluation, on the data of a project `Trainer`."""

    def __init__(self, trainer: Trainer):
        torch.manual_seed(0)
        self.device = trainer.device
        self.train = trainer.splits["train"]
        self.test = trainer.splits["test"]
        self.batch = trainer.batch_size
        self.model = ReferenceModel(trainer.tokenizer.vocab_size).to(self.device)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=1.0
        )

    def _loss(self, x, y):
        logits = self.model(x)[:, -1]  # the answer position (number-level: one token)
        return F.cross_entropy(logits, y[:, -1]), logits

    def train_step(self) -> None:
        rows = torch.randint(len(self.train), (self.batch,), device=self.device)
        loss, _ = self._loss(self.train.x[rows], self.train.y[rows])
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    @torch.no_grad()
    def evaluate(self) -> None:
        for split in (self.train, self.test):
            _, logits = self._loss(split.x, split.y)
            (logits.argmax(-1) == split.y[:, -1]).float().mean().item()
