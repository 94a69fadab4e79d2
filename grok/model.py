"""The models: a decoder-only transformer in the nanoGPT style (learned positions, pre-LayerNorm
blocks), and the MLP of Gromov 2023; `build_model` makes the one model.kind names.

The feed-forward layers' activation is model.activation (GELU by default); model.layer_norm
false leaves out every LayerNorm of the transformer (identities in their place), as in Nanda et
al. 2023's one-layer model.

What differs from a textbook GPT, all for the tasks here:
- causal attention is combined with a key-padding mask, so a sequence's outputs do not depend on
  how much padding its batch has;
- `forward(idx, cols)` computes outputs only at the positions in `cols` (the answer positions):
  the last block runs its queries, feed-forward layer and the head there alone, since nothing
  else is read;
- the first block's LayerNorm and q, k, v projections are computed per (token, position) pair
  and looked up, when the vocabulary is smaller than the batch (the same values, less work);
- positions before the answer that many rows of a batch share (`a op` in `a op b =`) are
  computed once per distinct prefix, and each row attends to its prefix's keys and values
  (not in training with dropout, where every row draws its own masks).

The MLP ("Grokking modular arithmetic", arXiv 2301.02679) embeds the two operands of `a op b =`
(model.d_model wide), concatenates them, passes them through one hidden layer of model.d_ff
units and its activation (Gromov's: x^2) and reads out over the vocabulary. It answers at one
position only, the one after `=`, so it takes modular tasks with the number tokenizer, whose
answer is one token (a rule of grok/config.py). Its embedding is `tok_emb`, as the
transformer's, so the progress measures of grok/fourier.py read either model's.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from grok.config import ModelConfig

# The activation of the hidden layers (model.activation): the transformer's FeedForward, the MLP.
ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "quadratic": torch.square}


def scale_init(model: nn.Module, scale: float) -> None:
    """Multiply every initial parameter by model.init_scale (1: PyTorch's initialization)."""
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)


def nanda_init(model: nn.Module, vocab_size: int) -> None:
    """Nanda et al. 2023's initialization, as their code draws it: every weight matrix
    N(0, 1/d_model) (embeddings, attention, MLP), the read-out N(0, 1/vocab), biases 0 (their
    model has none in attention); LayerNorm's scales stay 1. The initial norm of their 1-layer
    model is then about 42, against about 155 at PyTorch's defaults (embeddings N(0, 1))."""
    d_model = model.cfg.d_model
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "head.weight":
                p.normal_(0.0, vocab_size**-0.5)
            elif p.dim() == 2:
                p.normal_(0.0, d_model**-0.5)
            elif name.endswith("bias"):
                p.zero_()


def layer_norm(cfg: ModelConfig) -> nn.Module:
    """A LayerNorm over d_model, or the identity when model.layer_norm is false."""
    return nn.LayerNorm(cfg.d_model) if cfg.layer_norm else nn.Identity()


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.d_model = cfg.d_model
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def heads(self, t):
        """(B, T, C) -> (B, nh, T, hs)."""
        B, T = t.shape[:2]
        return t.view(B, T, self.n_head, self.d_model // self.n_head).transpose(1, 2)

    def keys_values(self, h):
        """The keys and values (B, nh, T, hs) of the normed input h (B, T, C)."""
        C = self.d_model
        k, v = F.linear(h, self.qkv.weight[C:], self.qkv.bias[C:]).split(C, dim=2)
        return self.heads(k), self.heads(v)

    def forward(self, x, mask, cols=None, qkv=None, past=None):
        # x: (B, T, C); mask: None (plain causal) or (B|1, 1, Tq, Tk) bool, True = may attend.
        # cols: None, or the query positions (Tq,) whose outputs are needed (tensor or slice).
        # qkv: None, or the projections (B, T, 3C) of x already made (then x is not read).
        # past: None, or the keys and values (B, nh, P, hs) of P positions before x's, prepended
        # to x's own (Tk = P + T; the mask then says who sees what).
        B, T = (x if qkv is None else qkv).shape[:2]
        C = self.d_model
        if qkv is not None:
            q, k, v = qkv.split(C, dim=2)
            q = q if cols is None else q[:, cols]
        elif cols is None:
            q, k, v = self.qkv(x).split(C, dim=2)
        else:  # keys and values everywhere, queries only where the output is read
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, cols], w[:C], b[:C])
            k, v = F.linear(x, w[C:], b[C:]).split(C, dim=2)
        q, k, v = self.heads(q), self.heads(k), self.heads(v)  # (B, nh, Tq | T, hs)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # At these lengths (a handful of tokens) the CPU's fused flash kernel does not pay over
        # the plain product (docs/speed.md, "What did not").
        backend = sdpa_kernel(SDPBackend.MATH) if q.device.type == "cpu" else nullcontext()
        with backend:
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                is_causal=mask is None,
                dropout_p=self.dropout if self.training else 0.0,
            )
        y = y.transpose(1, 2).reshape(B, -1, C)
        return self.resid_drop(self.proj(y))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.act = ACTIVATIONS[cfg.activation]

    def forward(self, x):
        return self.drop(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = layer_norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = layer_norm(cfg)
        self.mlp = FeedForward(cfg)

    def forward(self, x, mask, cols=None, qkv=None, past=None):
        # qkv: the attention's projections of ln_1(x), when GPT has looked them up already
        h = self.attn(self.ln_1(x) if qkv is None else None, mask, cols, qkv, past)
        x = (x if cols is None else x[:, cols]) + h
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.max_len = cfg.max_len
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = layer_norm(cfg)
        # PyTorch's default initialization (embeddings N(0, 1)), as the paper's setting. A small
        # initial norm, such as GPT-2's std 0.02, makes the model generalize almost as soon as it
        # fits the training set, hiding the grokking delay (Liu et al. 2022, Omnigrok).
        self.head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        if cfg.init == "nanda":
            nanda_init(self, vocab_size)
        scale_init(self, cfg.init_scale)

    def forward(self, idx, cols=None, pad_mask=None):
        """Logits (B, T, V), or (B, len(cols), V) at the positions `cols` only (a tensor of
        positions, or a slice: views instead of gathers).

        pad_mask: (B, T) True at padding keys, which no query may attend to.
        """
        B, T = idx.shape
        if T > self.max_len:
            raise ValueError(f"sequence length {T} exceeds model.max_len {self.max_len}")
        if cols is not None and pad_mask is None and (self.drop.p == 0 or not self.training):
            shared = self.shared_prefix(idx, cols)
            if shared is not None:
                return self.forward_from_prefix(idx, cols, *shared)
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        qkv = self.first_qkv(idx) if self.drop.p == 0 or not self.training else None
        causal = pos[None, :] <= pos[:, None]  # (T, T), query row, key column
        keys_ok = None if pad_mask is None else ~pad_mask[:, None, None, :]  # (B, 1, 1, T)
        full_mask = None if keys_ok is None else causal & keys_ok
        *body, last = self.blocks
        for block in body:
            x, qkv = block(x, full_mask, qkv=qkv), None
        if cols is None:
            x = last(x, full_mask, qkv=qkv)
        else:
            last_mask = causal[cols][None, None]  # (1, 1, Tq, T)
            if keys_ok is not None:
                last_mask = last_mask & keys_ok
            x = last(x, last_mask, cols, qkv)
        return self.head(self.ln_f(x))

    def first_qkv(self, idx, start: int = 0):
        """The first block's q, k, v (B, T, 3C) of tokens `idx` at positions start, start + 1,
        ..., or None when computing them directly is cheaper.

        Before any attention a position's input depends only on its token and its position, so
        the first block's LayerNorm and projections are made once for each (token, position)
        pair, V * T rows, and looked up: fewer rows than the batch's B * T when B > V."""
        B, T = idx.shape
        if B <= self.tok_emb.num_embeddings:
            return None
        first = self.blocks[0]
        pairs = self.tok_emb.weight[:, None] + self.pos_emb.weight[None, start : start + T]
        table = first.attn.qkv(first.ln_1(pairs)).flatten(0, 1)  # (V * T, 3C)
        return F.embedding(idx * T + torch.arange(T, device=idx.device), table)

    def shared_prefix(self, idx, cols):
        """(distinct prefixes (U, P), each row's prefix (B,)) for the prefix length P before
        every position in `cols` that saves the most positions, P * (B - U); None when no prefix
        is shared by at least two rows in each distinct one on average."""
        B = idx.shape[0]
        first = (cols.start or 0) if isinstance(cols, slice) else int(cols.min())
        vocab, key, best = self.tok_emb.num_embeddings, torch.zeros_like(idx[:, 0]), None
        for P in range(1, first + 1):
            if vocab**P >= 2**62:  # the prefix as one integer no longer fits
                break
            key = key * vocab + idx[:, P - 1]
            distinct, inverse = torch.unique(key, return_inverse=True)
            if 2 * len(distinct) > B:
                break
            saved = P * (B - len(distinct))
            if best is None or saved > best[0]:
                best = (saved, P, len(distinct), inverse)
        if best is None:
            return None
        _, P, U, inverse = best
        # One row of each distinct prefix (rows sharing a prefix hold the same tokens there).
        rows = torch.empty(U, dtype=torch.long, device=idx.device)
        rows.scatter_(0, inverse, torch.arange(B, device=idx.device))
        return idx[rows, :P], inverse

    def forward_from_prefix(self, idx, cols, prefixes, inverse):
        """`forward(idx, cols)` with the first P positions computed once per distinct prefix:
        prefixes (U, P), row i's being prefixes[inverse[i]]. Outputs at `cols`, all >= P."""
        B, T = idx.shape
        P = prefixes.shape[1]
        pos = torch.arange(T, device=idx.device)
        # The prefixes through every block, keeping each block's keys and values.
        x = self.tok_emb(prefixes) + self.pos_emb(pos[:P])
        past = []
        for i, block in enumerate(self.blocks):
            k, v = block.attn.keys_values(block.ln_1(x))
            past.append((k.index_select(0, inverse), v.index_select(0, inverse)))  # (B, nh, P, hs)
            if i + 1 < len(self.blocks):
                x = block(x, None)
        # The positions after them, for every row, attending to their prefix's keys and values.
        rest = idx[:, P:]
        x = self.tok_emb(rest) + self.pos_emb(pos[P:])
        qkv = self.first_qkv(rest, start=P)
        sees = pos[None, :] <= pos[P:, None]  # (T - P, T): query P + i, key j
        *body, last = self.blocks
        for block, kv in zip(body, past):
            x, qkv = block(x, sees[None, None], qkv=qkv, past=kv), None
        if isinstance(cols, slice):
            cols = slice(cols.start - P, None if cols.stop is None else cols.stop - P, cols.step)
        else:
            cols = cols - P
        x = last(x, sees[cols][None, None], cols, qkv, past[-1])
        return self.head(self.ln_f(x))

    @torch.no_grad()
    def generate(
        self,
        idx,
        max_new_tokens: int,
        eos_id: int | None = None,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ):
        """Extend each row of `idx` (B, T); greedy when temperature is 0. Stops at eos."""
        done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            if idx.shape[1] >= self.max_len:
                break
            logits = self(idx, cols=torch.tensor([idx.shape[1] - 1], device=idx.device))[:, -1]
            if temperature > 0:
                probs = F.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            else:
                nxt = logits.argmax(-1, keepdim=True)
            if eos_id is not None:
                nxt = torch.where(done[:, None], torch.full_like(nxt, eos_id), nxt)
                done |= nxt[:, 0] == eos_id
            idx = torch.cat([idx, nxt], dim=1)
            if eos_id is not None and done.all():
                break
        return idx


class MLP(nn.Module):
    """Gromov 2023's model: two operand embeddings, concatenated, one hidden layer, read-out."""

    A, B = 0, 2  # the operands' positions in `a op b =`

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        self.hidden = nn.Linear(2 * cfg.d_model, cfg.d_ff)
        self.act = ACTIVATIONS[cfg.activation]
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_ff, vocab_size, bias=False)
        scale_init(self, cfg.init_scale)

    def forward(self, idx, cols=None, pad_mask=None):
        """Logits (B, 1, V) of the answer to each prompt `a op b =` of idx (B, T).

        cols and pad_mask are the transformer's interface, which the trainer calls: the answer's
        position is the one position this model computes, and equations have no padding."""
        x = torch.cat([self.tok_emb(idx[:, self.A]), self.tok_emb(idx[:, self.B])], dim=1)
        return self.head(self.drop(self.act(self.hidden(x))))[:, None]  # (B, 1, V)


def build_model(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    """The model model.kind names; its initial parameters are drawn from torch's generator."""
    return MLP(cfg, vocab_size) if cfg.kind == "mlp" else GPT(cfg, vocab_size)
