"""Typed YAML: the one reader of YAML files, and plain mappings turned into checked dataclasses.

Each setting is declared once, as a dataclass field: its type annotation says what it accepts
(`int`, `float`, `bool`, `str`, `Literal[...]` for choices, a union, a nested dataclass: a
section) and its `bounds(...)` metadata the allowed range of a number. `Setting` is that
declaration, and `Setting.check` the one checker every value goes through, whether it comes from
a file, `--set`, a grid or a search space. `build` reads a mapping into such a dataclass and
raises `ConfigError` naming the key and what is allowed; `read_mapping` reads a YAML file that
must hold a mapping, refusing anything else in one line.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A setting, experiment file or command-line value that cannot be used. Its message is one
    line: a line break in it (from a key or value the user wrote) is shown escaped."""

    def __init__(self, message: object = ""):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


def bounds(lo: float | None = None, hi: float | None = None, lo_open=False, hi_open=False):
    """Field metadata: the value must lie in [lo, hi] (an open end excludes the bound)."""
    return {"range": (lo, hi, lo_open, hi_open)}


def is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp)


def shown(value: Any, width: int = 60) -> str:
    """`repr(value)`, cut to `width` characters: a message stays one short line."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def options(tp: Any) -> tuple[Any, ...]:
    """The members of a union type (the type itself when it is not one)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def interval(spec: tuple) -> str:
    lo, hi, lo_open, hi_open = spec
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return f"{left}{lo_s}, {hi_s}{right}"


def allowed(tp: Any, spec: tuple | None = None) -> str:
    """Human description of what a type annotation (and a range) accepts."""
    words = []
    for option in options(tp):
        if typing.get_origin(option) is Literal:
            words.append("one of " + ", ".join(repr(a) for a in typing.get_args(option)))
        elif option is type(None):
            words.append("null")
        elif option in (int, float):
            name = "an integer" if option is int else "a number"
            words.append(f"{name} in {interval(spec)}" if spec else name)
        else:
            words.append({str: "a string", bool: "true or false"}.get(option, str(option)))
    return " or ".join(words)


def _from_text(value: str) -> float:
    """YAML 1.1 reads `1e-3` and `1e5` as strings: their number, or TypeError."""
    try:
        return float(value)
    except ValueError:
        raise TypeError from None


def coerce(tp: Any, value: Any) -> Any:
    """Return `value` as type `tp`, or raise TypeError."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        for option in typing.get_args(tp):
            if value == option and type(value) is type(option):
                return value
        raise TypeError
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return coerce(option, value)
            except TypeError:
                continue
        raise TypeError
    if tp is type(None) and value is None:
        return None
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if isinstance(value, bool) or tp not in (int, float):
        raise TypeError
    if isinstance(value, str):
        value = _from_text(value)
    if tp is float and isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float: infinite, refused by its range
            return math.copysign(math.inf, value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # 1e5 written in YAML
    raise TypeError


def in_range(value: Any, spec: tuple) -> bool:
    """Whether a number lies in the range `spec` (finite, and between its bounds)."""
    lo, hi, lo_open, hi_open = spec
    if isinstance(value, float) and not math.isfinite(value):
        return False
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    return not (bad_lo or bad_hi)


@dataclass(frozen=True)
class Setting:
    """One leaf setting as declared: its dotted key, type annotation and range (numbers)."""

    key: str
    type: Any
    range: tuple | None = None

    @property
    def choices(self) -> tuple[Any, ...]:
        """The values of its `Literal` members (empty when it has none)."""
        out: tuple[Any, ...] = ()
        for option in options(self.type):
            if typing.get_origin(option) is Literal:
                out += typing.get_args(option)
        return out

    def allowed(self) -> str:
        return allowed(self.type, self.range)

    def check(self, value: Any, source: str) -> Any:
        """`value` as this setting holds it; a ConfigError naming the key if it is not one."""
        where = f"{source}: {self.key}"
        try:
            coerced = coerce(self.type, value)
        except TypeError:
            raise ConfigError(
                f"{where} = {shown(value)} has the wrong type; allowed: {self.allowed()}"
            ) from None
        numeric = isinstance(coerced, (int, float)) and not isinstance(coerced, bool)
        if numeric and self.range and not in_range(coerced, self.range):
            what = "is not finite" if not math.isfinite(coerced) else "is out of range"
            raise ConfigError(f"{where}: {shown(value)} {what}; allowed: {self.allowed()}")
        return coerced


def settings(cls: type, prefix: str = "") -> dict[str, Setting]:
    """Every leaf setting of dataclass `cls` and its sections, by dotted key."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Setting] = {}
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], prefix + f.name
        if f.metadata.get("free_form"):  # a mapping of names the user chooses: checked apart
            continue
        if is_section(tp):
            out.update(settings(tp, key + "."))
        else:
            out[key] = Setting(key, tp, f.metadata.get("range"))
    return out


def check_int(value: Any, low: int, where: str) -> int:
    """`value` if it is an integer >= low (true and false are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where} = {shown(value)}; allowed: an integer >= {low}")
    return value


def check_keys(data: dict, keys: Iterable[str], source: str, prefix: str = "") -> None:
    """Refuse the first key of `data` (in sorted order) that is not one of `keys`."""
    keys = list(keys)
    unknown = sorted(set(data) - set(keys), key=str)
    if unknown:
        allowed_keys = ", ".join(prefix + k for k in keys)
        raise ConfigError(
            f"{source}: unknown key {shown(prefix + str(unknown[0]))}; allowed: {allowed_keys}"
        )


def build(cls: type, data: Any, source: str, prefix: str = "") -> Any:
    """An instance of dataclass `cls` from a mapping; sections are read recursively and every
    value goes through its setting's check."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(data, fields, source, prefix)
    values = {}
    for name, value in data.items():
        tp, key = hints[name], prefix + name
        if is_section(tp):
            values[name] = build(tp, value, source, key + ".")
        else:
            values[name] = Setting(key, tp, fields[name].metadata.get("range")).check(value, source)
    return cls(**values)


# ---------------------------------------------------------------- cross-field rules


def get_dotted(cfg: Any, key: str) -> Any:
    """The value of the dotted setting `key` in the settings dataclass `cfg`."""
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


@dataclass(frozen=True)
class Rule:
    """A check of settings that only work together. `check` is given the values of `keys`, in
    order, and nothing else, so a rule can only depend on what it declares; it returns None,
    or the key to blame and what is wrong. A grid is checked rule by rule, over the
    combinations of the grid's values of that rule's keys (grok/experiment.py)."""

    keys: tuple[str, ...]
    check: Callable[..., tuple[str, str] | None]

    def problem(self, cfg: Any) -> tuple[str, str] | None:
        return self.check(*(get_dotted(cfg, key) for key in self.keys))


RULES: list[Rule] = []  # every rule, registered where the settings are declared (grok/config.py)


def rule(*keys: str):
    """Register the decorated function as a Rule over `keys`."""

    def register(check: Callable[..., tuple[str, str] | None]):
        RULES.append(Rule(keys, check))
        return check

    return register


def validate(cfg: Any, source: str = "config", rules: list[Rule] | None = None) -> None:
    """Refuse combinations of settings that cannot work together (every rule, or `rules`)."""
    for r in RULES if rules is None else rules:
        found = r.problem(cfg)
        if found:
            raise ConfigError(f"{source}: {found[0]}: {found[1]}")


# ---------------------------------------------------------------- files


def read_mapping(path: str | Path, what: str = "file") -> dict[str, Any]:
    """The mapping a YAML file holds. Anything else (no such file, a folder, bytes that are not
    UTF-8, an empty file, YAML that does not parse, a document that is not a mapping) is a
    ConfigError naming the file and what is wrong. Every YAML file a command reads comes here."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not {what}")
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such {what}") from None
    except OSError as err:
        raise ConfigError(
            f"{p}: cannot read {what}: {err.strerror or err.__class__.__name__}"
        ) from None
    return parse_mapping(data, p, what)


def parse_mapping(data: bytes, p: str | Path, what: str = "file") -> dict[str, Any]:
    """The mapping the YAML bytes `data` of the file `p` hold, or read_mapping's ConfigError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{p}: not a text file (byte {err.start} is not UTF-8); {what}s are UTF-8 YAML"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{at}") from None
    except RecursionError:
        raise ConfigError(f"{p}: not valid YAML (nested too deeply)") from None
    if raw is None:
        raise ConfigError(f"{p}: is empty; {what}s are YAML mappings (key: value)")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{p}: holds a {type(raw).__name__}, not a mapping; {what}s are YAML mappings "
            "(key: value)"
        )
    return raw
