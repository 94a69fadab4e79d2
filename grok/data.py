"""Datasets: equations `a op b = c` (mod p, or in S5) and text tasks, split into train/val/test.

An example is a prompt and an answer in token ids; the model reads prompt + answer and is scored
only on the answer tokens (less any masked ones). Splits are tensors, kept whole on the device.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grok.config import SETTINGS, Config, ConfigError, TaskConfig
from grok.operations import operation
from grok.schema import get_dotted
from grok.splits import split_indices
from grok.tokenizer import Tokenizer, build_tokenizer

if TYPE_CHECKING:  # torch is loaded when splits become tensors: the checks run without it
    import torch

IGNORE = -100  # target value that the loss and accuracy skip
SPLITS = ("train", "val", "test")


@dataclass
class Example:
    prompt: str  # text form; the model sees it as context only
    answer: str
    prompt_ids: list[int]
    answer_ids: list[int]  # what the model must produce (eos included where used)
    masked: int = 0  # leading answer tokens excluded from the loss
    a: int | None = None
    b: int | None = None
    c: int | None = None


@dataclass
class Split:
    """One split as tensors: inputs x, next-token targets y (IGNORE off the answer)."""

    name: str
    x: torch.Tensor  # (N, T) token ids, right-padded
    y: torch.Tensor  # (N, T) targets; y[:, t] is the token after x[:, t], or IGNORE
    cols: torch.Tensor  # (K,) positions where some example has a target
    pad_mask: torch.Tensor | None  # (N, T) True at padding; None when there is none
    examples: list[Example]

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device | str) -> Split:
        pad = None if self.pad_mask is None else self.pad_mask.to(device)
        return Split(
            self.name,
            self.x.to(device),
            self.y.to(device),
            self.cols.to(device),
            pad,
            self.examples,
        )


# ---------------------------------------------------------------- examples


def modular_equations(op: str, p: int) -> list[tuple[int, int, int]]:
    """All (a, b, c) of task.op (as element numbers; b != 0 for division), in (a, b) order."""
    return operation(op).table(p)


def prompt_ids(task: TaskConfig, tok: Tokenizer, text: str) -> list[int]:
    """Token ids of a prompt as the model saw prompts in training (text tasks start with bos)."""
    ids = tok.encode(text)
    return ids if task.kind == "modular" else [tok.bos_id] + ids


def _answer_ids(tok: Tokenizer, text: str) -> list[int]:
    # One residue token needs no end marker; variable-length answers end with eos.
    ids = tok.encode(text)
    return ids if tok.number_level else ids + [tok.eos_id]


def build_examples(task: TaskConfig, tok: Tokenizer) -> list[Example]:
    if task.kind == "modular":
        op, out = operation(task.op), []
        names = op.elements(task.p)
        # A prompt's tokens are its parts' tokens (an element, the symbol, an element, '='),
        # so each part is encoded once rather than every prompt (4 million at the largest p).
        ids = [tok.encode(name) for name in names]
        symbol, equals = tok.encode(op.symbol), tok.encode("=")
        answers = [_answer_ids(tok, name) for name in names]
        for a, b, c in op.table(task.p):
            prompt = op.prompt(names[a], names[b])
            p_ids = ids[a] + symbol + ids[b] + equals
            out.append(Example(prompt, names[c], p_ids, answers[c], a=a, b=b, c=c))
        return out
    if task.kind == "text":
        lines = [task.text]
        sep = None
    else:
        path = Path(task.path)
        try:
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError, ValueError) as err:  # ValueError: a NUL in the path
            raise ConfigError(f"task.path: cannot read {path}: {err.__class__.__name__}") from None
        if not lines:
            raise ConfigError(f"task.path: {path} has no non-empty lines")
        sep = task.separator
    out = []
    for n, line in enumerate(lines, 1):
        if sep is not None:
            if sep not in line:
                raise ConfigError(f"task.path: line {n} of {task.path} lacks separator {sep!r}")
            head, tail = line.split(sep, 1)
            prompt, answer = head + sep, tail
        else:
            prompt, answer = "", line
        try:
            p_ids, a_ids = prompt_ids(task, tok, prompt), _answer_ids(tok, answer)
        except ValueError as err:
            raise ConfigError(f"task: {err}; the char tokenizer takes printable ASCII") from None
        masked = max(0, task.mask_first - len(prompt))
        if masked >= len(a_ids):  # nothing left to learn or score: refuse, not a NaN loss
            where = f"line {n} of {task.path}" if task.kind == "lines" else "task.text"
            raise ConfigError(
                f"task.mask_first: {task.mask_first} masks every token of {where}; "
                f"allowed: below {len(prompt) + len(a_ids)}"
            )
        out.append(Example(prompt, answer, p_ids, a_ids, masked=masked))
    return out


# ---------------------------------------------------------------- splits


def _tensorize(name: str, examples: list[Example], pad_id: int) -> Split:
    import torch

    seqs = [e.prompt_ids + e.answer_ids for e in examples]
    t = max((len(s) for s in seqs), default=2) - 1
    # Each sequence right-padded to t + 1 tokens: x reads positions :t, y the next token.
    full = torch.tensor([s + [pad_id] * (t + 1 - len(s)) for s in seqs], dtype=torch.long)
    full = full.reshape(len(seqs), t + 1)
    length = torch.tensor([len(s) for s in seqs], dtype=torch.long).unsqueeze(1)
    # the first answer token that is scored, as a position of y
    first = torch.tensor([len(e.prompt_ids) + e.masked - 1 for e in examples], dtype=torch.long)
    pos = torch.arange(t)
    past_end = pos >= length - 1  # (N, t): no input token there (the last token is not read)
    x = full[:, :t].masked_fill(past_end, pad_id)
    y = full[:, 1:].masked_fill(past_end | (pos < first.unsqueeze(1)), IGNORE)
    pad = x == pad_id
    cols = torch.nonzero((y != IGNORE).any(0)).flatten()
    return Split(name, x, y, cols, pad if pad.any() else None, examples)


def split_examples(task: TaskConfig, tok: Tokenizer | None = None) -> dict[str, list[Example]]:
    """Each split's examples in table order, without tensors (what a report counts and shows)."""
    examples = build_examples(task, tok or build_tokenizer(task))
    idx = split_indices(len(examples), task.train_fraction, task.val_fraction, task.data_seed)
    return {name: [examples[i] for i in sorted(ids)] for name, ids in zip(SPLITS, idx)}


def build_splits(task: TaskConfig, tok: Tokenizer | None = None) -> dict[str, Split]:
    tok = tok or build_tokenizer(task)
    return {
        name: _tensorize(name, examples, tok.pad_id)
        for name, examples in split_examples(task, tok).items()
    }


def describe(task: TaskConfig, splits: dict[str, Split] | dict[str, list[Example]]) -> str:
    """A short Markdown description of how the data was made and the split sizes (of splits as
    tensors or as lists of examples)."""
    total = sum(len(s) for s in splits.values())
    if task.kind == "modular":
        op = operation(task.op)
        what = (
            op.describe(task.p)
            + f": {total} equations. Text form `a{op.symbol}b=c`, {task.tokenizer}-level tokens; "
            "the loss is on c only."
        )
    elif task.kind == "text":
        what = f"The single string {task.text!r}, character tokens, loss on every character"
        what += f" after the first {task.mask_first}." if task.mask_first else "."
    else:
        what = f"{total} lines of {task.path}, character tokens" + (
            f"; loss on the part after {task.separator!r}." if task.separator else "."
        )
    counts = " | ".join(str(len(splits[s])) for s in SPLITS)
    return (
        f"{what}\n\nSplit by a random permutation with data_seed {task.data_seed} "
        f"(train_fraction {task.train_fraction:g}, val_fraction {task.val_fraction:g}, "
        "test the rest); the splits are disjoint and cover every example.\n\n"
        f"| train | val | test |\n|---|---|---|\n| {counts} |\n"
    )


def write_splits(
    task: TaskConfig, splits: dict[str, Split], out: Path, compress: bool = False
) -> None:
    """Each split as `<name>.csv` (`<name>.csv.gz` with `compress`: gzip with no name or time in
    its header, so the same splits give the same bytes), and DESCRIPTION.md with the counts."""
    out.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        rows = io.StringIO(newline="")
        w = csv.writer(rows)
        if task.kind == "modular":
            op = operation(task.op)
            names = op.elements(task.p)
            w.writerow(["a", "op", "b", "c", "text"])
            for e in splits[name].examples:
                w.writerow([names[e.a], op.symbol, names[e.b], names[e.c], e.prompt + e.answer])
        else:
            w.writerow(["prompt", "answer", "text"])
            for e in splits[name].examples:
                w.writerow([e.prompt, e.answer, e.prompt + e.answer])
        data = rows.getvalue().encode()
        if compress:
            (out / f"{name}.csv.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (out / f"{name}.csv").write_bytes(data)
    (out / "DESCRIPTION.md").write_text(describe(task, splits))


# ---------------------------------------------------------------- checks before anything runs


def check_length(cfg: Config, longest: int) -> None:
    """Examples must fit the model's positions: `longest` inputs (a sequence less its last)."""
    if longest > cfg.model.max_len:
        raise ConfigError(f"model.max_len: examples need {longest} positions; raise it")


def build_data(cfg: Config, tokenizer: Tokenizer | None = None) -> dict[str, Split]:
    """The splits of a config, checked against the model: examples must fit its positions."""
    splits = build_splits(cfg.task, tokenizer)
    check_length(cfg, max(s.x.shape[1] for s in splits.values()))
    return splits


# The settings a dataset's examples depend on (how they are split does not change them): an
# experiment checks each combination of their values once.
SPLIT_KEYS = ("task.train_fraction", "task.val_fraction", "task.data_seed")
DATA_KEYS = tuple(k for k in SETTINGS if k.startswith("task.") and k not in SPLIT_KEYS)


def check_data(configs: Iterable[Config]) -> None:
    """Make each distinct set of examples once, so that a bad data file fails here and not in a
    trial, and check that every config's model fits them."""
    longest: dict[str, int] = {}
    for cfg in configs:
        key = repr([get_dotted(cfg, k) for k in DATA_KEYS])
        if key not in longest:
            examples = build_examples(cfg.task, build_tokenizer(cfg.task))
            longest[key] = max(len(e.prompt_ids) + len(e.answer_ids) for e in examples) - 1
        check_length(cfg, longest[key])


if __name__ == "__main__":  # `python -m grok.data`: the command line of grok/write_splits.py
    import sys

    from grok.write_splits import main

    sys.exit(main())
