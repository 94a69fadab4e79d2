"""The binary operations of Power et al. 2022: their tables, text forms and what they require.

Each operation `a o b = c` is over residues mod p, or over the permutation group S5. Its text
form is `a`, one operator symbol, `b`, `=`, then `c`; both tokenizers read it. Elements are
numbered: a residue is its own number; an S5 element is its position in `S5_ELEMENTS`.

S5 elements are permutations of 0..4 in one-line notation: `10234` maps 0 to 1, 1 to 0 and
keeps 2, 3, 4. Composition applies the right operand first: (x*y)(i) = x(y(i)).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

# The values of task.op, in the order of the paper's table.
OpName = Literal[
    "+",
    "-",
    "/",
    "*",
    "x^2+y^2",
    "x^2+xy+y^2",
    "x^2+xy+y^2+x",
    "x^3+xy",
    "x^3+xy^2+y",
    "x/y|x-y",
    "s5:x*y",
    "s5:x*y*x^-1",
    "s5:x*y*x",
]

S5_ELEMENTS: tuple[tuple[int, ...], ...] = tuple(itertools.permutations(range(5)))
S5_TEXT: tuple[str, ...] = tuple("".join(map(str, perm)) for perm in S5_ELEMENTS)
_S5_INDEX = {perm: i for i, perm in enumerate(S5_ELEMENTS)}


def compose(x: tuple[int, ...], y: tuple[int, ...]) -> tuple[int, ...]:
    """x*y: apply y, then x."""
    return tuple(x[i] for i in y)


def inverse(x: tuple[int, ...]) -> tuple[int, ...]:
    out = [0] * len(x)
    for i, image in enumerate(x):
        out[image] = i
    return tuple(out)


def _s5(word: Callable[[tuple, tuple], tuple]) -> Callable[[int, int, int], int]:
    """An S5 operation on element numbers, from one on permutations (p is not used)."""
    return lambda a, b, p: _S5_INDEX[word(S5_ELEMENTS[a], S5_ELEMENTS[b])]


def _div(a: int, b: int, p: int) -> int:
    return a * pow(b, -1, p) % p  # multiply by the inverse of b


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, math.isqrt(n) + 1))


@dataclass(frozen=True)
class Operation:
    name: str  # task.op
    symbol: str  # the one character between the operands in the text form
    slug: str  # the operation in trial folder names
    answer: Callable[[int, int, int], int]  # (a, b, p) -> c, as element numbers
    detail: str = ""  # how c is made, ending the table's description
    group: Literal["mod", "s5"] = "mod"  # residues mod p, or the permutation group S5
    prime: str = ""  # why p must be prime; "" when any p >= 2 works
    nonzero_b: bool = False  # b = 0 is left out of the table

    def elements(self, p: int) -> tuple[str, ...]:
        """Text form of each element, by number (the number tokenizer's first tokens)."""
        return S5_TEXT if self.group == "s5" else tuple(str(i) for i in range(p))

    def table(self, p: int) -> list[tuple[int, int, int]]:
        """Every (a, b, c) of the operation, in (a, b) order."""
        n = len(self.elements(p))
        bs = range(1, n) if self.nonzero_b else range(n)
        return [(a, b, self.answer(a, b, p)) for a in range(n) for b in bs]

    def size(self, p: int) -> int:
        """How many equations `table(p)` holds, without making them."""
        n = len(self.elements(p))
        return n * (n - 1 if self.nonzero_b else n)

    def label(self, p: int) -> str:
        """The task in a table, in the operands' letters a and b: `a+b mod 97`,
        `a^2+ab+b^2 mod 97`, `a*b*a^-1 in S5`."""
        formula = self.name.removeprefix("s5:").translate(str.maketrans("xy", "ab"))
        if len(formula) == 1:
            formula = f"a{formula}b"
        return f"{formula} in S5" if self.group == "s5" else f"{formula} mod {p}"

    def prompt(self, a: str, b: str) -> str:
        return f"{a}{self.symbol}{b}="

    def describe(self, p: int) -> str:
        """What the table holds, for DESCRIPTION.md (without the count)."""
        if self.group == "s5":
            return (
                f"All equations `a {self.symbol} b = c` in S5 with a, b among the 120 permutations "
                f"of 01234 in one-line notation{self.detail}"
            )
        return (
            f"All equations `a {self.symbol} b = c (mod {p})` with residues a, b in 0..{p - 1}"
            + self.detail
        )

    def check_p(self, p: int, default_p: int) -> str | None:
        """Why this p cannot be used with the operation; None if it can."""
        if self.prime and not is_prime(p):
            return f"{p} is not prime; {self.prime} needs a prime p"
        if self.group == "s5" and p != default_p:
            return f"{p}: S5 operations have no modulus; leave task.p at {default_p}"
        return None

    def parse(self, text: str, p: int) -> tuple[int, int]:
        """The operands of a prompt `a<symbol>b=`, or a ValueError naming the expected form."""
        names = self.elements(p)
        index = {name: i for i, name in enumerate(names)}
        parts = text[:-1].split(self.symbol) if text.endswith("=") else []
        if len(parts) == 2 and all(part in index for part in parts):
            a, b = (index[part] for part in parts)
            if not (self.nonzero_b and b == 0):
                return a, b
        if self.group == "s5":
            what = "permutations of 01234 such as 10234"
        else:
            what = f"residues 0..{p - 1}" + (" (B not 0)" if self.nonzero_b else "")
        raise ValueError(
            f"prompt {text!r} is not an equation of {self.name!r}: "
            f"expected A{self.symbol}B= with A, B {what}"
        )


_MOD = [
    Operation("+", "+", "add", lambda a, b, p: (a + b) % p),
    Operation("-", "-", "sub", lambda a, b, p: (a - b) % p),
    Operation(
        "/",
        "/",
        "div",
        _div,
        " and b != 0 (c = a * b^-1 mod p)",
        prime="division mod p",
        nonzero_b=True,
    ),
    Operation("*", "*", "mul", lambda a, b, p: a * b % p, " (c = a * b mod p)"),
    Operation(
        "x^2+y^2", "#", "x2+y2", lambda a, b, p: (a * a + b * b) % p, " (c = a^2 + b^2 mod p)"
    ),
    Operation(
        "x^2+xy+y^2",
        "&",
        "x2+xy+y2",
        lambda a, b, p: (a * a + a * b + b * b) % p,
        " (c = a^2 + ab + b^2 mod p)",
    ),
    Operation(
        "x^2+xy+y^2+x",
        "%",
        "x2+xy+y2+x",
        lambda a, b, p: (a * a + a * b + b * b + a) % p,
        " (c = a^2 + ab + b^2 + a mod p)",
    ),
    Operation("x^3+xy", "$", "x3+xy", lambda a, b, p: (a**3 + a * b) % p, " (c = a^3 + ab mod p)"),
    Operation(
        "x^3+xy^2+y",
        "@",
        "x3+xy2+y",
        lambda a, b, p: (a**3 + a * b * b + b) % p,
        " (c = a^3 + ab^2 + b mod p)",
    ),
    Operation(
        "x/y|x-y",
        "|",
        "div-if-odd-else-sub",
        lambda a, b, p: _div(a, b, p) if b % 2 else (a - b) % p,
        " (c = a * b^-1 mod p if b is odd, else a - b mod p; p prime)",
        prime="its division mod p",
    ),
]
_S5 = [
    Operation(
        "s5:x*y",
        ".",
        "s5-xy",
        _s5(compose),
        " (c = a*b: apply b, then a)",
        group="s5",
    ),
    Operation(
        "s5:x*y*x^-1",
        "^",
        "s5-conj",
        _s5(lambda x, y: compose(compose(x, y), inverse(x))),
        " (c = a*b*a^-1, b conjugated by a; apply the right factor first)",
        group="s5",
    ),
    Operation(
        "s5:x*y*x",
        "~",
        "s5-xyx",
        _s5(lambda x, y: compose(compose(x, y), x)),
        " (c = a*b*a; apply the right factor first)",
        group="s5",
    ),
]
OPERATIONS: dict[str, Operation] = {op.name: op for op in _MOD + _S5}


def operation(name: str) -> Operation:
    """The operation named by task.op (a name the config has already checked)."""
    return OPERATIONS[name]
