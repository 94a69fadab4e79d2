"""Typed YAML: plain mappings turned into dataclasses, checked, with one clear line per mistake.

A dataclass field's type annotation says what it accepts (`int`, `float`, `Literal[...]`, a union,
a nested dataclass: a section) and its `bounds(...)` metadata the allowed range. `build` reads a
mapping into such a dataclass and raises `ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal


class ConfigError(ValueError):
    """A setting, experiment file or command-line value that cannot be used."""


def bounds(lo: float | None = None, hi: float | None = None, lo_open=False, hi_open=False):
    """Field metadata: the value must lie in [lo, hi] (an open end excludes the bound)."""
    return {"range": (lo, hi, lo_open, hi_open)}


def is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp)


def allowed(tp: Any) -> str:
    """Human description of what a type annotation accepts."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(allowed(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, str(tp)
    )


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
        return float(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # 1e5 written in YAML
    raise TypeError


def check_range(value: Any, spec: tuple, where: str) -> None:
    lo, hi, lo_open, hi_open = spec
    if value is None or isinstance(value, str):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value} is not finite")
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ConfigError(
            f"{where}: {value!r} is out of range; allowed: {left}{lo_s}, {hi_s}{right}"
        )


def check_int(value: Any, low: int, where: str) -> int:
    """`value` if it is an integer >= low (true and false are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where} = {value!r}; allowed: an integer >= {low}")
    return value


def check_keys(data: dict, keys: Iterable[str], source: str, prefix: str = "") -> None:
    """Refuse the first key of `data` (in sorted order) that is not one of `keys`."""
    keys = list(keys)
    unknown = sorted(set(data) - set(keys), key=str)
    if unknown:
        allowed_keys = ", ".join(prefix + k for k in keys)
        raise ConfigError(
            f"{source}: unknown key {prefix + str(unknown[0])!r}; allowed: {allowed_keys}"
        )


def build(cls: type, data: Any, source: str, prefix: str = "") -> Any:
    """An instance of dataclass `cls` from a mapping; sections are read recursively and every
    value is coerced to its field's type and checked against its bounds."""
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
            continue
        try:
            coerced = coerce(tp, value)
        except TypeError:
            raise ConfigError(
                f"{source}: {key} = {value!r} has the wrong type; allowed: {allowed(tp)}"
            ) from None
        spec = fields[name].metadata.get("range")
        if spec:
            check_range(coerced, spec, f"{source}: {key}")
        values[name] = coerced
    return cls(**values)
