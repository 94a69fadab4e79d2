"""The `tracking:` section of an experiment file: which experiment trackers a sweep also logs to.

```yaml
tracking:
  wandb: {project: grokking, entity: null, mode: online}   # or offline, disabled
  mlflow: {tracking_uri: sqlite:///mlflow.db}              # or http://host:5000
```

`tune_main.py --wandb PROJECT` and `--mlflow URI` turn the same on without editing the file.
Everything here is checked before Ray starts, including that the tracker is installed; the
Tune callbacks themselves are in grok/trackers.py. TensorBoard needs no section: every sweep
writes event files into its trial folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import yaml

from grok.schema import ConfigError

INSTALL = "pip install -r requirements-tracking.txt"
WANDB_MODES = ("online", "offline", "disabled")
WANDB_KEYS = ("project", "entity", "mode")
MLFLOW_KEYS = ("tracking_uri",)
DEFAULT_MLFLOW_URI = "mlflow.db"  # an SQLite file in the folder the sweep is started from


@dataclass
class WandbSettings:
    project: str
    entity: str | None = None  # None: the signed-in user's default
    mode: str = "online"  # online, offline (run files kept locally for `wandb sync`), disabled


@dataclass
class MlflowSettings:
    tracking_uri: str = DEFAULT_MLFLOW_URI  # sqlite:///FILE, http(s)://SERVER, databricks, ...


@dataclass
class Tracking:
    wandb: WandbSettings | None = None
    mlflow: MlflowSettings | None = None

    @property
    def names(self) -> list[str]:
        return [name for name in ("wandb", "mlflow") if getattr(self, name) is not None]


def _options(raw: Any, section: str, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    """A tracker's mapping (null or {} for its defaults), its keys checked."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where}: tracking.{section} must be a mapping; allowed keys: {', '.join(keys)}"
        )
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key 'tracking.{section}.{unknown[0]}'; allowed: {', '.join(keys)}"
        )
    for key, value in raw.items():
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(
                f"{where}: tracking.{section}.{key} = {value!r}; allowed: a non-empty string"
            )
    return {k: v for k, v in raw.items() if v is not None}


def _wandb(raw: Any, project: str | None, where: str) -> WandbSettings:
    options = _options(raw, "wandb", WANDB_KEYS, where)
    if project is not None:
        options["project"] = project
    if "project" not in options:
        raise ConfigError(f"{where}: tracking.wandb needs a project, e.g. {{project: grokking}}")
    mode = options.get("mode") or os.environ.get("WANDB_MODE") or "online"
    if mode not in WANDB_MODES:
        raise ConfigError(
            f"{where}: tracking.wandb.mode = {mode!r}; allowed: {', '.join(WANDB_MODES)}"
        )
    return WandbSettings(options["project"], options.get("entity"), mode)


def mlflow_uri(uri: str) -> str:
    """A tracking URI as MLflow takes it; a bare path is an SQLite file, made absolute so that
    it does not depend on the folder MLflow later runs in."""
    if "://" in uri or uri.startswith(("databricks", "file:")):
        return uri
    return f"sqlite:///{Path(uri).expanduser().resolve()}"


def _mlflow(raw: Any, uri: str | None, where: str) -> MlflowSettings:
    options = _options(raw, "mlflow", MLFLOW_KEYS, where)
    if uri is not None:
        if not uri.strip():
            raise ConfigError("--mlflow: empty tracking URI; e.g. --mlflow sqlite:///mlflow.db")
        options["tracking_uri"] = uri
    chosen = options.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    return MlflowSettings(mlflow_uri(chosen or DEFAULT_MLFLOW_URI))


def check_installed(tracking: Tracking) -> None:
    """A tracker asked for must be importable: say what to install, before Ray starts."""
    for name in tracking.names:
        if find_spec(name) is None:
            raise ConfigError(f"tracking.{name}: the {name} package is not installed; {INSTALL}")


def read_tracking(
    path: str | Path, wandb_project: str | None = None, mlflow: str | None = None
) -> Tracking:
    """The tracking section of an experiment file with the command line's --wandb and --mlflow
    on top; raises ConfigError naming the key and what is allowed."""
    where = str(path)
    raw = (yaml.safe_load(Path(path).read_text()) or {}).get("tracking")
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{where}: tracking must be a mapping with keys wandb, mlflow")
    raw = raw or {}
    unknown = sorted(set(raw) - {"wandb", "mlflow"})
    if unknown:
        raise ConfigError(f"{where}: unknown key 'tracking.{unknown[0]}'; allowed: wandb, mlflow")
    if wandb_project is not None and not wandb_project.strip():
        raise ConfigError("--wandb: empty project name; e.g. --wandb grokking")
    tracking = Tracking()
    if "wandb" in raw or wandb_project is not None:
        tracking.wandb = _wandb(raw.get("wandb"), wandb_project, where)
    if "mlflow" in raw or mlflow is not None:
        tracking.mlflow = _mlflow(raw.get("mlflow"), mlflow, where)
    check_installed(tracking)
    return tracking


def dashboard_sign_in() -> str | None:
    """How to sign in to the Ray dashboard of a cluster with token authentication (Ray turns it
    on for a new local cluster unless RAY_AUTH_MODE says otherwise); None when it is off."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "sign in with the token in $RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"
    return f"sign in with the token that `ray get-auth-token` prints (it is in {path})"
