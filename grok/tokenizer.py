"""Tokenizers: number-level (one token per residue or permutation, as in the paper) and char.

Both read and write the same text form, `12/5=79`, and reserve three special tokens:
pad (never in the loss), bos (starts text examples, so the empty prompt can be generated from)
and eos (ends an answer, so generation knows where to stop).
"""

from __future__ import annotations

import re
import string

from grok.config import TaskConfig
from grok.operations import operation
from grok.schema import shown

SPECIALS = ("<pad>", "<bos>", "<eos>")
OPS = ("+", "-", "/")
# Printable ASCII: every character a text task may use with the character tokenizer.
CHARS = tuple(string.printable[:95]) + ("\t",)


class Tokenizer:
    """Maps text to token ids and back; `pad_id`, `bos_id` and `eos_id` are special."""

    def __init__(self, symbols: tuple[str, ...], number_level: bool):
        self.symbols = symbols + SPECIALS
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.pad_id, self.bos_id, self.eos_id = (self.index[s] for s in SPECIALS)
        self.number_level = number_level
        # numbers, then each one-character symbol (operators and '=') on its own
        marks = "".join(re.escape(s) for s in symbols if len(s) == 1 and not s.isalnum())
        self._pattern = re.compile(rf"\d+|[{marks}]|\s+") if number_level else None

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def tokens(self, text: str) -> list[str]:
        if not self.number_level:
            return list(text)
        out, pos = [], 0
        for match in self._pattern.finditer(text):
            if match.start() != pos:
                break
            pos = match.end()
            if not match.group().isspace():
                out.append(match.group())
        if pos != len(text):
            at = f"at position {pos}: {text[pos : pos + 8]!r}"
            raise ValueError(f"cannot tokenize {shown(text, 80)} {at}")
        return out

    def encode(self, text: str) -> list[int]:
        ids = []
        for tok in self.tokens(text):
            if tok not in self.index:
                where = shown(text, 80)
                raise ValueError(f"{shown(tok, 20)} is not in the vocabulary (in {where})")
            ids.append(self.index[tok])
        return ids

    def decode(self, ids: list[int], stop_at_eos: bool = True) -> str:
        out = []
        for i in ids:
            if i == self.eos_id and stop_at_eos:
                break
            if i in (self.pad_id, self.bos_id, self.eos_id):
                continue
            out.append(self.symbols[i])
        return "".join(out)


def number_tokenizer(p: int, op: str = "/") -> Tokenizer:
    """The elements are the first tokens (residues 0..p-1 are tokens 0..p-1; S5's permutations
    0..119); then + - /, then the operation's own symbol if it is another, '=', the specials."""
    o = operation(op)
    extra = () if o.symbol in OPS else (o.symbol,)
    return Tokenizer(o.elements(p) + OPS + extra + ("=",), number_level=True)


def char_tokenizer() -> Tokenizer:
    return Tokenizer(CHARS, number_level=False)


def build_tokenizer(task: TaskConfig) -> Tokenizer:
    """The tokenizer a task uses; it depends only on the config, so a checkpoint rebuilds it."""
    return number_tokenizer(task.p, task.op) if task.tokenizer == "number" else char_tokenizer()
