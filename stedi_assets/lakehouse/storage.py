"""Object storage behind one small interface: a local folder or an S3 bucket.

Everything that touches files goes through a :class:`Store`, addressed by URI,
so no code assumes a local path. Engines read and write Parquet themselves
(Polars and Spark both speak ``s3://``), and Iceberg metadata is written by
pyiceberg; the store lists and reads landing files, writes simulated ones,
and lists and deletes the files maintenance finds unreferenced.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class StorageError(RuntimeError):
    """A storage operation failed; the message names the URI."""


class LandingError(RuntimeError):
    """The landing zone cannot be read; the message names the URI."""


class FileTooLarge(StorageError):
    """A file is larger than the bound a reader set: it was not read."""


@dataclass(frozen=True)
class FileVersion:
    """One version of a file: a fingerprint that changes whenever the file does, and its size in bytes.

    ``refused`` says why an entry found below a prefix is not a file that may
    be read there (a symbolic link, a device, a FIFO, an S3 key that leaves
    the prefix); such an entry is listed so that it can be reported, never read.
    """

    fingerprint: str
    size: int
    refused: str = ""


SYMBOLIC_LINK = "symbolic link: not followed (landing files are read only from their own folder)"
SPECIAL_FILE = "not a regular file (device, FIFO or socket): not read"
KEY_OUTSIDE_PREFIX = "key with an empty, '.' or '..' path segment: it names a place outside its folder, not read"


class Store(Protocol):
    def list_files(self, prefix_uri: str) -> list[str]:
        """Every file below ``prefix_uri`` (recursively), as sorted URIs."""

    def read_bytes(self, uri: str, max_bytes: int | None = None) -> bytes:
        """The file's bytes; with ``max_bytes``, :class:`FileTooLarge` for a larger file, found before it is read."""

    def fingerprints(self, prefix_uri: str) -> dict[str, str]:
        """Every file below ``prefix_uri`` -> a text that changes whenever the file does."""

    def versions(self, prefix_uri: str) -> dict[str, FileVersion]:
        """Every file below ``prefix_uri`` -> its fingerprint and size, and every entry that is there but may
        not be read (``FileVersion.refused``)."""

    def size(self, uri: str) -> int:
        """The file's size in bytes, without reading it."""

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write an object so that readers see either the old or the new content."""

    def list_objects(self, prefix_uri: str) -> list[tuple[str, float]]:
        """Every file below ``prefix_uri`` with its last modification time (epoch seconds)."""

    def delete_files(self, uris: list[str]) -> None:
        """Delete these files; a file already gone is not an error."""

    def prepare_directory(self, uri: str) -> None:
        """Make ``uri`` usable as a folder to write files into."""

    @property
    def storage_options(self) -> dict[str, str] | None:
        """Options for Polars' own object-store client, or None for local files."""


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def is_s3_uri(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme:
        raise StorageError(f"{uri}: unsupported URI scheme {parsed.scheme!r} (use a local path, file:// or s3://)")
    return Path(uri)


def normalize_uri(uri: str) -> str:
    """Absolute form of a local path; other URIs unchanged (minus a trailing slash)."""
    if is_s3_uri(uri):
        return uri.rstrip("/")
    return str(local_path(uri).expanduser().resolve())


class LocalStore:
    """Files in a local folder.

    Only regular files below a folder are its files: a symbolic link (to a
    file or a folder) is never followed and a device, FIFO or socket never
    read, so nothing outside the folder can be read through it.
    """

    storage_options = None

    def _entries(self, prefix_uri: str):
        """(path, lstat result) of every entry below the folder, without following symbolic links."""
        root = local_path(prefix_uri)
        try:
            if not stat.S_ISDIR(os.lstat(root).st_mode):
                return
        except OSError:
            return
        pending = [str(root)]
        while pending:
            folder = pending.pop()
            try:
                with os.scandir(folder) as entries:
                    listed = list(entries)
            except OSError:  # removed while listing
                continue
            for entry in listed:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.path)
                else:
                    yield entry.path, info

    def list_files(self, prefix_uri: str) -> list[str]:
        return sorted(path for path, info in self._entries(prefix_uri) if stat.S_ISREG(info.st_mode))

    def fingerprints(self, prefix_uri: str) -> dict[str, str]:
        return {uri: version.fingerprint for uri, version in self.versions(prefix_uri).items()}

    def versions(self, prefix_uri: str) -> dict[str, FileVersion]:
        # Size and mtime in nanoseconds: a rewrite within the same second still differs.
        found = {}
        for path, info in self._entries(prefix_uri):
            if stat.S_ISREG(info.st_mode):
                found[path] = FileVersion(f"{info.st_size}:{info.st_mtime_ns}", info.st_size)
            elif stat.S_ISLNK(info.st_mode):
                found[path] = FileVersion(f"link:{info.st_mtime_ns}", 0, refused=SYMBOLIC_LINK)
            else:
                found[path] = FileVersion(f"special:{info.st_mtime_ns}", 0, refused=SPECIAL_FILE)
        return dict(sorted(found.items()))

    def read_bytes(self, uri: str, max_bytes: int | None = None) -> bytes:
        path = local_path(uri)
        try:
            # O_NOFOLLOW: a file swapped for a symbolic link after it was listed is
            # refused, not followed; O_NONBLOCK: a FIFO never blocks the open.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise StorageError(f"{uri}: cannot read (a symbolic link, not followed)") from None
            raise StorageError(f"{uri}: cannot read ({error.strerror})") from error
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise StorageError(f"{uri}: cannot read (not a regular file)")
            if max_bytes is not None and info.st_size > max_bytes:
                raise FileTooLarge(f"{uri}: larger than {max_bytes} bytes ({info.st_size}), not read")
            try:
                data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
            except OSError as error:
                raise StorageError(f"{uri}: cannot read ({error.strerror})") from error
        if max_bytes is not None and len(data) > max_bytes:  # grew since it was looked at
            raise FileTooLarge(f"{uri}: larger than {max_bytes} bytes, not read")
        return data

    def size(self, uri: str) -> int:
        try:
            return os.lstat(local_path(uri)).st_size
        except OSError as error:
            raise StorageError(f"{uri}: cannot read ({error.strerror})") from error

    def write_bytes(self, uri: str, data: bytes) -> None:
        target = local_path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target, then rename over it: rename is atomic on
        # POSIX, so a reader never sees a half-written object.
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        # A writer killed between writing and renaming leaves its temporary
        # file behind; the next successful write of the object removes it.
        for leftover in target.parent.glob(f".{target.name}.*"):
            leftover.unlink(missing_ok=True)

    def list_objects(self, prefix_uri: str) -> list[tuple[str, float]]:
        objects = []
        for uri in self.list_files(prefix_uri):
            try:
                objects.append((uri, local_path(uri).stat().st_mtime))
            except FileNotFoundError:  # deleted since it was listed
                continue
        return objects

    def delete_files(self, uris: list[str]) -> None:
        for uri in uris:
            local_path(uri).unlink(missing_ok=True)

    def prepare_directory(self, uri: str) -> None:
        local_path(uri).mkdir(parents=True, exist_ok=True)
