"""Where the pipeline keeps images, journal, ledger and reports: one root, any fsspec filesystem.

Every path the pipeline writes is built here from a fixed layout, so a value read from a prompt table
(an ``id`` such as ``../../etc/passwd``) can never steer a write outside the root: table values only
ever become one sanitised path component. Writes are atomic: a reader (or a crash) never sees a half
file, locally through write-to-temp-then-rename, on object stores because a PUT is all-or-nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractBufferedFile

from nbpro_pipeline.models.common import Resolution

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_COMPONENT = 80


def url_to_fs(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``fsspec.core.url_to_fs`` with listings always fresh on remote filesystems.

    fsspec caches directory listings per filesystem instance, and instances are shared process-wide.
    Other processes add ledger parts, journal segments and prompt tables, so in a long-lived process (a
    sensor, a code server) a cached listing would hide them, report stale sizes, or make ``exists`` deny
    a file that was just written. Credentials are never passed here: s3fs and gcsfs read them from the
    environment (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``) unless ``storage_options`` name them.
    """
    options = dict(storage_options or {})
    if fsspec.utils.get_protocol(url) not in ("file", "local"):
        options.setdefault("use_listings_cache", False)
    return fsspec.core.url_to_fs(url, **options)


def safe_component(value: str) -> str:
    """One path component from any string: only ``[A-Za-z0-9._-]``, never empty, ``.`` or ``..``.

    When anything had to change, a short hash of the original is appended, so two different ids that
    sanitise alike (``a/b`` and ``a_b``) still get different files.
    """
    cleaned = _UNSAFE.sub("_", value).strip("._") or "x"
    if cleaned == value and len(value) <= MAX_COMPONENT and not value.startswith("."):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{cleaned[:MAX_COMPONENT]}-{digest}"


def cell_dir(provider: str, resolution: Resolution | str) -> str:
    """``provider=…/resolution=…``, the provider's name made a safe path component."""
    return f"provider={safe_component(str(provider))}/resolution={Resolution(resolution).value}"


class Storage:
    """A root directory on a filesystem URI (a local path by default, ``s3://bucket/prefix`` etc.)."""

    def __init__(self, root: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> None:
        root = os.fspath(root)
        self.fs, path = url_to_fs(root, storage_options)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        if self.is_local:
            path = str(Path(path).resolve())
        self.root = path.rstrip("/") or "/"
        self.storage_options = storage_options or {}
        # local directories this process made or found: every image and journal segment would otherwise
        # cost a mkdir and a stat; a directory removed behind our back is made again (open_atomic)
        self._made_dirs: set[str] = set()

    def __repr__(self) -> str:
        return f"Storage({self.uri(self.root)!r})"

    # -- layout -------------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """A path under the root from fixed layout parts; table values must go through safe_component."""
        for part in parts:
            if part in ("", ".", "..") or part.startswith("/") or "/../" in f"/{part}/":
                raise ValueError(f"refusing path part {part!r}: it could leave the storage root")
        return "/".join([self.root, *parts])

    def image_path(self, provider: str, resolution: Resolution, prompt_id: str, fingerprint: str, ext: str) -> str:
        name = f"{safe_component(prompt_id)}-{fingerprint[:8]}.{ext}"
        return self.path("images", cell_dir(provider, resolution), name)

    def quarantine_path(self, provider: str, resolution: Resolution, prompt_id: str, fingerprint: str, ext: str) -> str:
        """Paid-for images that failed validation: kept (never dropped), but apart from the good ones."""
        name = f"{safe_component(prompt_id)}-{fingerprint[:8]}.{ext}"
        return self.path("quarantine", cell_dir(provider, resolution), name)

    def thumbnail_path(self, image: str) -> str | None:
        """Where the thumbnail of the image at ``image`` (a path or URI under this root) is kept:
        ``thumbnails/`` + its path, as a JPEG; None for an image outside the root."""
        path = self.fs._strip_protocol(image) if not self.is_local else image
        if self.is_local and not path.startswith(self.root + "/"):
            path = str(Path(image).resolve())  # a relative path or one through a link
        if not path.startswith(self.root + "/"):
            return None
        rel = path[len(self.root) + 1 :]
        try:
            return self.path("thumbnails", rel.rsplit(".", 1)[0] + ".jpg")
        except ValueError:  # it leaves the root through ".."
            return None

    def quarantine_body_path(
        self, provider: str, resolution: Resolution, prompt_id: str, task_id: str, fingerprint: str, ext: str
    ) -> str:
        """The raw body of a paid result the client could not read (``ext``: json, txt or bin)."""
        return self.quarantine_path(provider, resolution, f"{prompt_id}.{task_id}", fingerprint, f"body.{ext}")

    def draft_path(
        self, provider: str, resolution: Resolution, prompt_id: str, fingerprint: str, n: int, ext: str
    ) -> str:
        """An answer's images besides its final one: kept, apart from the images a row stands for."""
        name = f"{safe_component(prompt_id)}-{fingerprint[:8]}.draft{n}.{ext}"
        return self.path("drafts", cell_dir(provider, resolution), name)

    def ledger_dir(self) -> str:
        return self.path("ledger")

    def journal_dir(self, provider: str, resolution: Resolution) -> str:
        return self.path("journal", cell_dir(provider, resolution))

    def tables_dir(self) -> str:
        return self.path("tables")

    def reports_dir(self) -> str:
        return self.path("reports")

    def uri(self, path: str) -> str:
        """What users see and ledgers store: a plain path locally, ``proto://...`` elsewhere."""
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def scratch_dir(self) -> str:
        """A local directory for downloads in flight (always local: downloads stream to disk first)."""
        import tempfile

        base = Path(self.root) / ".scratch" if self.is_local else Path(tempfile.gettempdir()) / "nbpro-scratch"
        if str(base) not in self._made_dirs or not base.is_dir():
            base.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(str(base))
        return str(base)

    # -- reads --------------------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def find(self, path: str) -> list[str]:
        """Every file under ``path`` (recursively), sorted; empty when the directory does not exist."""
        if self.is_local and os.path.isdir(path):
            return sorted(p for p in _walk_files(path) if not _hidden(p))
        try:
            return [p for p in self.fs.find(path) if not _hidden(p)]
        except FileNotFoundError:
            return []

    def read_bytes(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    # -- atomic writes ------------------------------------------------------------------------------
    @contextmanager
    def open_atomic(self, path: str) -> Iterator[BinaryIO]:
        """A binary file that appears at ``path`` complete or not at all."""
        parent = path.rsplit("/", 1)[0]
        if self.is_local:
            tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{path.rsplit('/', 1)[1]}"
            try:
                with self._open_new_local(parent, tmp) as fh:
                    yield fh
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        else:
            fh = self.fs.open(path, "wb")  # object stores commit the object on close only
            try:
                yield fh
            except BaseException:
                _abandon(self.fs, fh, path)  # closing would commit the half-written object
                raise
            fh.close()

    def _open_new_local(self, parent: str, tmp: str) -> BinaryIO:
        """``tmp`` opened for writing, its directory made first unless this process already made it."""
        if parent in self._made_dirs:
            try:
                return open(tmp, "wb")
            except FileNotFoundError:  # removed since: make it again
                self._made_dirs.discard(parent)
        os.makedirs(parent, exist_ok=True)
        self._made_dirs.add(parent)
        return open(tmp, "wb")

    def write_bytes(self, path: str, data: bytes) -> None:
        with self.open_atomic(path) as fh:
            fh.write(data)

    def put_stream(self, src: BinaryIO, path: str) -> None:
        """Copy the rest of ``src`` into place atomically."""
        with self.open_atomic(path) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    def put_file(self, local_path: str, path: str) -> None:
        """Copy a finished local file into place atomically."""
        if self.is_local:
            with open(local_path, "rb") as src, self.open_atomic(path) as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        else:
            self.fs.put_file(local_path, path)


def _abandon(fs: Any, fh: Any, path: str) -> None:
    """Drop a half-written non-local file instead of closing it (``close`` would PUT the partial object)."""
    if isinstance(fh, AbstractBufferedFile):
        with contextlib.suppress(Exception):
            fh.discard()  # e.g. abort a multipart upload
        fh.closed = True  # neither close() nor __del__ may upload the buffer now
    else:  # written in place (memory, sftp, ...): the partial file already exists
        with contextlib.suppress(Exception):
            fh.close()
        with contextlib.suppress(Exception):
            fs.rm_file(path)


def _walk_files(directory: str) -> Iterator[str]:
    """What fsspec's local ``find`` lists (a symlinked directory as an entry, not descended into), without
    the stat result it keeps per file: the journal of a large run has hundreds of thousands of segments."""
    for parent, dirs, files in os.walk(directory):
        for name in [*files, *(d for d in dirs if os.path.islink(f"{parent}/{d}"))]:
            yield f"{parent}/{name}"


def _hidden(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith((".", "_"))
