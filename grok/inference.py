"""Generation from a trained model: completions of prompts and greedy exact-match accuracy.

Any prompt is either completed or refused with a one-line ValueError (a token outside the
vocabulary, an empty prompt where the task has no start token, a prompt longer than the model's
positions). A prompt the model can read but never saw the like of in training (a division by 0,
another operation, another form than `a op b =`) is completed, and `outside_training` says why
its answer means nothing.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from grok.config import Config
from grok.data import SPLITS, Split, build_splits, prompt_ids
from grok.model import GPT
from grok.operations import operation
from grok.tokenizer import Tokenizer, build_tokenizer


def answer_budget(model: GPT, tok: Tokenizer, prompt_len: int) -> int:
    """Tokens to generate at most: one residue, or up to the end of the model's positions."""
    return 1 if tok.number_level else model.max_len - prompt_len


@torch.no_grad()
def complete(
    model: GPT, cfg: Config, prompts: list[str], temperature: float = 0.0, seed: int = 0
) -> list[str]:
    """The text each prompt is continued with (the answer, without the prompt)."""
    tok = build_tokenizer(cfg.task)
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for text in prompts:
        ids = prompt_ids(cfg.task, tok, text)
        if not ids:
            raise ValueError("the prompt is empty and this task has no start token to begin from")
        if len(ids) >= model.max_len:
            raise ValueError(f"the prompt is {len(ids)} tokens; the model reads {model.max_len}")
        idx = torch.tensor([ids], device=device)
        full = model.generate(
            idx, answer_budget(model, tok, len(ids)), tok.eos_id, temperature, gen
        )
        out.append(tok.decode(full[0, len(ids) :].tolist()))
    return out


def outside_training(cfg: Config, text: str) -> str | None:
    """Why a modular task's prompt is outside the training distribution; None if it is not (or
    the task is a text task, whose prompts are free). The prompt must tokenize."""
    t = cfg.task
    if t.kind != "modular":
        return None
    op = operation(t.op)
    squeezed = "".join(build_tokenizer(t).tokens(text))  # the tokenizer drops spaces
    try:
        op.parse(squeezed, t.p)
    except ValueError as err:
        parts = squeezed[:-1].split(op.symbol) if squeezed.endswith("=") else []
        if op.nonzero_b and len(parts) == 2 and parts[1] == "0":
            return f"division by 0 has no answer mod {t.p}"
        return f"the model was trained on equations of {t.op!r} only ({err})"
    return None


@torch.no_grad()
def greedy_accuracy(model: GPT, cfg: Config, split: Split) -> float:
    """Exact match of greedily decoded answers over a split (prompts batched by length)."""
    if not len(split):
        return float("nan")
    tok = build_tokenizer(cfg.task)
    device = next(model.parameters()).device
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(split.examples):
        by_len[len(e.prompt_ids)].append(i)
    correct = 0
    for length, rows in by_len.items():
        for start in range(0, len(rows), 4096):
            chunk = [split.examples[i] for i in rows[start : start + 4096]]
            idx = torch.tensor([e.prompt_ids for e in chunk], device=device)
            full = model.generate(idx, answer_budget(model, tok, length), tok.eos_id)
            for e, seq in zip(chunk, full[:, length:].tolist()):
                correct += tok.decode(seq) == e.answer
    return correct / len(split)


def evaluate_splits(model: GPT, cfg: Config) -> dict[str, float]:
    splits = build_splits(cfg.task)
    return {name: greedy_accuracy(model, cfg, splits[name]) for name in SPLITS}
