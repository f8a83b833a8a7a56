"""Object storage behind one small interface: a local folder or an S3 bucket.

Everything that touches files goes through a :class:`Store`, addressed by URI,
so no code assumes a local path. Engines read and write Parquet themselves
(Polars and Spark both speak ``s3://``), and Iceberg metadata is written by
pyiceberg; the store lists and reads landing files, writes simulated ones,
and lists and deletes the files maintenance finds unreferenced.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class StorageError(RuntimeError):
    """A storage operation failed; the message names the URI."""


@dataclass(frozen=True)
class FileVersion:
    """One version of a file: a fingerprint that changes whenever the file does, and its size in bytes."""

    fingerprint: str
    size: int


class Store(Protocol):
    def list_files(self, prefix_uri: str) -> list[str]:
        """Every file below ``prefix_uri`` (recursively), as sorted URIs."""

    def read_bytes(self, uri: str) -> bytes: ...

    def fingerprints(self, prefix_uri: str) -> dict[str, str]:
        """Every file below ``prefix_uri`` -> a text that changes whenever the file does."""

    def versions(self, prefix_uri: str) -> dict[str, FileVersion]:
        """Every file below ``prefix_uri`` -> its fingerprint and size."""

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
    """Files in a local folder."""

    storage_options = None

    def list_files(self, prefix_uri: str) -> list[str]:
        root = local_path(prefix_uri)
        if not root.is_dir():
            return []
        return sorted(str(p) for p in root.rglob("*") if p.is_file())

    def fingerprints(self, prefix_uri: str) -> dict[str, str]:
        return {uri: version.fingerprint for uri, version in self.versions(prefix_uri).items()}

    def versions(self, prefix_uri: str) -> dict[str, FileVersion]:
        # Size and mtime in nanoseconds: a rewrite within the same second still differs.
        found = {}
        for uri in self.list_files(prefix_uri):
            try:
                stat = os.stat(uri)
            except FileNotFoundError:  # removed while listing
                continue
            found[uri] = FileVersion(f"{stat.st_size}:{stat.st_mtime_ns}", stat.st_size)
        return found

    def read_bytes(self, uri: str) -> bytes:
        try:
            return local_path(uri).read_bytes()
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
