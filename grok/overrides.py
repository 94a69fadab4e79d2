"""Settings changed and files read: dotted overrides (`--set`, a grid's values) applied to a
config and checked, and config.yaml read and written beside checkpoints."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml

from grok.config import SETTINGS, Config
from grok.schema import ConfigError, Setting, build, is_section, read_mapping, shown

# ---------------------------------------------------------------- overrides


def set_dotted(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set `a.b.c = value` in a nested dict, creating sections as needed. An empty mapping
    given to a section leaves it as it is; given to a setting, it is the value (and refused)."""
    parts = str(key).split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = key if key.isprintable() else shown(key)
            raise ConfigError(f"{source}: {where}: {part!r} is a setting, not a section")
        node = child
    if value == {} and isinstance(node.get(parts[-1]), dict):
        return
    node[parts[-1]] = value


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one `--set dotted.key=value`; the value is read as YAML (`1e-3`, `null`, `[1, 2]`)."""
    if "=" not in item:
        raise ConfigError(f"--set {shown(item)}: expected dotted.key=value, e.g. optim.lr=3e-4")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {shown(item)}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError):
        value = raw
    return key, value


def apply_overrides(cfg: Config, overrides: dict[str, Any], source: str) -> Config:
    """A new config with dotted `overrides` applied and checked."""
    data = cfg.to_dict()
    for key, value in overrides.items():
        set_dotted(data, key, value, source)
    return Config.from_dict(data, source)


def setting(key: Any, source: str) -> Setting:
    """The declaration of a dotted setting; a ConfigError naming the key if it is none."""
    node: Any = Config
    prefix = ""
    for part in str(key).split("."):
        if not is_section(node):
            where = prefix.rstrip(".")
            where = where if where.isprintable() else shown(where)
            raise ConfigError(f"{source}: {where} is a setting, not a section")
        hints = typing.get_type_hints(node)
        if part not in hints:
            allowed = ", ".join(prefix + name for name in hints)
            raise ConfigError(f"{source}: unknown key {shown(prefix + part)}; allowed: {allowed}")
        node, prefix = hints[part], prefix + part + "."
    if is_section(node):
        raise ConfigError(f"{source}: {key} is a section, not a setting")
    return SETTINGS[str(key)]


def check_setting(key: Any, value: Any, source: str) -> Any:
    """`value` as the setting `key` holds it, checked against its declaration alone."""
    return setting(key, source).check(value, source)


def with_values(base: Config, values: dict[str, Any]) -> Config:
    """`base` with checked dotted `values` put in, without re-running the cross-field rules."""
    data = base.to_dict()
    for key, value in values.items():
        set_dotted(data, key, value, "")
    return build(Config, data, "config")


# ---------------------------------------------------------------- files


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'task': {'op': '/'}, 'optim.lr': 1} -> {'task.op': '/', 'optim.lr': 1}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and value:  # an empty one stays: a setting must refuse it
            out.update(flatten(value, full + "."))
        else:
            out[full] = value
    return out


def load_config(path: str | Path) -> Config:
    """Read a resolved config YAML (as written beside checkpoints)."""
    return Config.from_dict(read_mapping(path, "config file"), str(path))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
