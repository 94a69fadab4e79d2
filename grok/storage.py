"""Where results live: a local folder or an object store, through the filesystems Ray Tune uses.

A results root is a path (`results`), a `file://` URI, or an object-store URI with pyarrow's
query options (`s3://bucket/prefix?endpoint_override=host:9000&scheme=http`, `gs://bucket/x`).
`resolve` turns it into a `Location`: a pyarrow filesystem and a path on it, checked (a known
scheme, a bucket that exists) before anything is written. Credentials are never part of the
URI: pyarrow reads them from the environment (AWS_ACCESS_KEY_ID, ..., or the cloud's defaults).

The readers (infer.py, grok.export, plotting) work on local folders. `local_view` gives them
the folder itself for a local path, and for a URI a mirror of its small files (every file but
the `.pt` tensors) in a cache folder; `fetch` completes the one checkpoint a reader loads.
No Ray and no torch here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

MIRROR_SOURCE = ".mirror-of"  # in a mirror's root: the URI it mirrors
LARGE = (".pt",)  # tensors: fetched only for the checkpoint a reader loads


class StorageError(ValueError):
    """A results location that cannot be used: bad URI, unknown scheme, missing bucket."""


@dataclass(frozen=True)
class Location:
    """A folder (or file) on a pyarrow filesystem."""

    fs: pafs.FileSystem
    path: str  # on `fs`, without scheme or options
    uri: str  # the local path, or the URI with its query options (what `resolve` takes)

    def __truediv__(self, name: str) -> Location:
        parts = urlsplit(self.uri)
        if "://" not in self.uri:
            uri = f"{self.uri.rstrip('/')}/{name}"
        else:
            uri = parts._replace(path=f"{parts.path.rstrip('/')}/{name}").geturl()
        return Location(self.fs, f"{self.path.rstrip('/')}/{name}", uri)

    def __str__(self) -> str:
        """How people see it: the path, or the URI without its query options."""
        if "://" not in self.uri:
            return self.uri
        parts = urlsplit(self.uri)
        return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def local(self) -> Path | None:
        """The local path, when this is on the local disk."""
        return Path(self.path) if isinstance(self.fs, pafs.LocalFileSystem) else None

    def kind(self) -> pafs.FileType:
        return self.fs.get_file_info(self.path).type

    def is_file(self) -> bool:
        return self.kind() == pafs.FileType.File

    def holds_anything(self) -> bool:
        """Whether this is a folder with something in it."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        return self.kind() == pafs.FileType.Directory and bool(self.fs.get_file_info(selector))

    def files(self, recursive: bool = True) -> list[pafs.FileInfo]:
        """The files below this folder (none when it does not exist)."""
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=recursive)
        infos = self.fs.get_file_info(selector)
        return [i for i in infos if i.type == pafs.FileType.File]

    def names(self) -> list[str]:
        """The names of the files directly in this folder."""
        return [i.base_name for i in self.files(recursive=False)]

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        """Write a file whole or not at all: by write-and-rename on a local disk; an object
        store makes an object visible only once its upload completes."""
        parent = self.path.rstrip("/").rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        if self.local is None:
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
            return
        tmp = f"{parent}/.tmp-{os.getpid()}-{self.name}"
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def delete(self) -> None:
        if self.kind() == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        else:
            self.fs.delete_file(self.path)

    def move_to(self, dest: Location) -> None:
        """Rename on a local disk; copy then delete on an object store, which has no rename."""
        if self.local is not None:
            self.fs.create_dir(dest.path.rsplit("/", 1)[0], recursive=True)
            self.fs.move(self.path, dest.path)
            return
        if self.kind() == pafs.FileType.Directory:
            self.copy_to(dest)
        else:
            self.fs.copy_file(self.path, dest.path)
        self.delete()

    def copy_to(self, dest: Location) -> None:
        """Copy this folder, whole, to `dest` (any filesystem to any other)."""
        if dest.local is not None:  # a local folder must exist; an object store has none
            dest.fs.create_dir(dest.path, recursive=True)
        pafs.copy_files(self.path, dest.path, self.fs, dest.fs)


def at(place: str | Path | Location) -> Location:
    """A Location as is; a local path as a Location (unchecked: nothing to check)."""
    if isinstance(place, Location):
        return place
    path = Path(place).resolve()
    return Location(pafs.LocalFileSystem(), path.as_posix(), str(place))


def resolve(uri: str) -> Location:
    """The location a path or URI names, checked: raises StorageError for an unknown scheme,
    a bucket that does not exist, or a store that cannot be reached."""
    if "://" not in uri:
        return at(Path(uri).expanduser().resolve())
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except Exception as err:  # pyarrow raises ArrowInvalid, ValueError or ImportError
        scheme = urlsplit(uri).scheme
        raise StorageError(
            f"{uri}: cannot use scheme {scheme!r} ({str(err).splitlines()[0]}); allowed: a "
            "local folder, file:// or an object-store URI pyarrow knows (s3://, gs://, ...)"
        ) from None
    if isinstance(fs, pafs.LocalFileSystem):
        return at(path)
    where = Location(fs, path.rstrip("/"), uri)
    bucket = path.split("/", 1)[0]
    try:
        kind = fs.get_file_info(bucket).type
    except OSError as err:
        raise StorageError(f"{where}: cannot reach it ({str(err).splitlines()[0]})") from None
    if kind == pafs.FileType.NotFound:
        raise StorageError(f"{where}: bucket {bucket!r} does not exist; create it first")
    return where


def cache_root() -> Path:
    """Where mirrors of remote results go: $GROK_CACHE, or ~/.cache/grok-sweeps."""
    return Path(os.environ.get("GROK_CACHE") or Path.home() / ".cache" / "grok-sweeps")


def _mirror_dir(where: Location) -> Path:
    # Readable (bucket/prefix) below a folder per store (a short hash of scheme, host, options).
    parts = urlsplit(where.uri)
    store = f"{parts.scheme}://{parts.netloc}?{parts.query}"
    digest = hashlib.sha256(store.encode()).hexdigest()[:8]
    return cache_root() / f"{parts.scheme}-{digest}" / where.path


def _sync_file(info: pafs.FileInfo, src: Location, dest: Path) -> None:
    """Copy one remote file unless the local copy has its size and time already."""
    mtime = info.mtime.timestamp() if info.mtime else None
    if dest.is_file():
        stat = dest.stat()
        if stat.st_size == info.size and (mtime is None or stat.st_mtime == mtime):
            return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".tmp-{os.getpid()}-{dest.name}")
    pafs.copy_files(info.path, str(tmp), src.fs, pafs.LocalFileSystem())
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    os.replace(tmp, dest)


def local_view(place: str | Path | Location) -> Path:
    """A local folder with what `place` holds: the folder itself when local; else a mirror of
    its files but the `.pt` tensors (kept in step: files gone from the store go here too)."""
    if isinstance(place, Path) or (isinstance(place, str) and "://" not in place):
        return Path(place)  # as given: what readers print stays what the user typed
    where = place if isinstance(place, Location) else resolve(place)
    if where.local is not None:
        return where.local
    mirror = _mirror_dir(where)
    if where.kind() == pafs.FileType.NotFound:
        raise StorageError(f"{where}: no such folder")
    remote = {}
    for info in where.files():
        rel = info.path[len(where.path) :].lstrip("/")
        remote[rel] = info
        if not rel.endswith(LARGE):
            _sync_file(info, where, mirror / rel)
    for path in mirror.rglob("*") if mirror.is_dir() else []:
        rel = path.relative_to(mirror).as_posix()
        if path.is_file() and rel != MIRROR_SOURCE and rel not in remote:
            path.unlink()
    mirror.mkdir(parents=True, exist_ok=True)
    (mirror / MIRROR_SOURCE).write_text(where.uri)
    return mirror


def fetch(folder: Path) -> None:
    """Complete a folder of a mirror (a checkpoint) with its large files; nothing for a
    folder that is not in a mirror."""
    folder = Path(folder).resolve()
    root = next((p for p in [folder, *folder.parents] if (p / MIRROR_SOURCE).is_file()), None)
    if root is None:
        return
    where = resolve((root / MIRROR_SOURCE).read_text()) / folder.relative_to(root).as_posix()
    for info in where.files():
        _sync_file(info, where, folder / info.path[len(where.path) :].lstrip("/"))
