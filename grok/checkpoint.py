"""The checkpoint folder: its files, its manifest, and how it is written, checked and loaded.

A checkpoint folder holds `model.pt` (the weights), `state.pt` (optimizer, step, random states:
what resuming needs), `config.yaml` (the resolved config) and `manifest.json` (the step and each
file's SHA-256). A weights-only checkpoint (`export_weights`) has no `state.pt` and says so in its
manifest. Folders are written aside and moved into place, so a reader finds the old checkpoint or
the new one, never half of one; every file is checked against the manifest before it is read, and
tensors load with `torch.load(weights_only=True)`. See docs/architecture.md.

Torch is imported only by the functions that read tensors: the names and the manifest serve the
results and plotting code without it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grok.config import Config
from grok.overrides import load_config
from grok.schema import ConfigError

if TYPE_CHECKING:
    import torch

    from grok.model import GPT

CHECKPOINT_FILES = ("model.pt", "state.pt", "config.yaml")
WEIGHTS_FILES = ("model.pt", "config.yaml")  # a weights-only checkpoint: inference, no resume
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, partial or not what it claims to be."""


def is_checkpoint(folder: Path) -> bool:
    """Whether `folder` holds a whole checkpoint (its manifest is written last)."""
    return (folder / MANIFEST).is_file()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a checkpoint folder: step, files and their hashes, weights_only."""
    d = Path(folder)
    if not is_checkpoint(d):
        raise CheckpointError(f"{d}: not a complete checkpoint (no {MANIFEST}; partly written?)")
    try:
        manifest = json.loads((d / MANIFEST).read_text())
        manifest["files"] = dict(manifest["files"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{d}/{MANIFEST}: unreadable manifest") from None
    return manifest


def check_files(d: Path, names: tuple[str, ...], manifest: dict[str, Any]) -> None:
    """Refuse a folder that lacks one of `names` or whose file differs from its manifest."""
    for name in names:
        if not (d / name).is_file():
            raise CheckpointError(f"{d}: checkpoint is missing {name}")
        if manifest["files"].get(name) != _sha256(d / name):
            raise CheckpointError(f"{d}/{name}: contents do not match the manifest (changed?)")


def read_checkpoint(directory: str | Path) -> tuple[Config, dict, dict | None]:
    """Check and load a checkpoint folder: (config, model state_dict, training state); the
    training state is None for a weights-only checkpoint (see `export_weights`)."""
    import torch

    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"{d}: no such checkpoint folder")
    manifest = read_manifest(d)
    if "format" in manifest:  # another format's folder, e.g. a TransformerLens export
        raise CheckpointError(f"{d}: a {manifest['format']} export, not a checkpoint")
    weights_only = bool(manifest.get("weights_only", False))
    check_files(d, WEIGHTS_FILES if weights_only else CHECKPOINT_FILES, manifest)
    try:
        cfg = load_config(d / "config.yaml")
    except ConfigError as err:
        raise CheckpointError(str(err)) from None
    try:
        weights = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
        state = None
        if not weights_only:
            state = torch.load(d / "state.pt", map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses anything but tensors and plain data
        raise CheckpointError(f"{d}: cannot load safely: {str(err).splitlines()[0]}") from None
    return cfg, weights, state


def publish(
    final: Path,
    names: tuple[str, ...],
    step: int | None,
    write: Callable[[Path], None],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder aside (`write` puts `names` in it), add its manifest, then move it
    into place, so that `final` is always whole: the old checkpoint or the new one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=final.parent))
    try:
        write(tmp)
        files = {name: _sha256(tmp / name) for name in names}
        manifest = {"step": step, **(extra or {}), "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    except BaseException:  # a full disk, an interrupt: no half-written folder left beside it
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def export_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """Copy a checkpoint's weights and config, checked, into `out` as a weights-only checkpoint:
    what inference needs (about a third of the size: no optimizer state), not a resume point."""
    src, final = Path(checkpoint), Path(out)
    read_checkpoint(src)  # refuses a damaged or tampered source before anything is written
    if final.exists() and not is_checkpoint(final):
        raise CheckpointError(f"{final}: exists and is not a checkpoint; not overwriting it")

    def write(tmp: Path) -> None:
        for name in WEIGHTS_FILES:
            shutil.copyfile(src / name, tmp / name)

    # Where it came from, relative to the working folder when under it: no path of this
    # machine in a manifest that is shared.
    here = Path.cwd()
    source = src.resolve().relative_to(here) if src.resolve().is_relative_to(here) else src
    extra = {"weights_only": True, "source": str(source)}
    return publish(final, WEIGHTS_FILES, read_manifest(src).get("step"), write, extra)


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, Config]:
    """The transformer and config of a checkpoint, ready for inference (generation)."""
    from grok.model import GPT
    from grok.tokenizer import build_tokenizer

    cfg, weights, _ = read_checkpoint(directory)
    if cfg.model.kind != "transformer":
        raise CheckpointError(
            f"{directory}: model.kind {cfg.model.kind!r} does not generate; "
            "inference takes a transformer's checkpoint"
        )
    model = GPT(cfg.model, build_tokenizer(cfg.task).vocab_size)
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(
            f"{directory}: weights do not fit the model its config describes"
        ) from None
    return model.to(device).eval(), cfg
