"""Engines compute the zone rules; each one executes the same narwhals rules.

An engine knows how to read landing JSON into a typed frame, how to scan and
write the Parquet data files of a table, and how to hold a computed frame while it is checked and
written. Everything else (rules, checks, storage layout) is engine-neutral.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import narwhals as nw

from stedi_assets.domain.schemas import TableSchema
from stedi_assets.lakehouse.storage import Store, join_uri
from stedi_assets.settings import EngineName

ENGINE_NAMES = tuple(EngineName)
"""The engines' names, as the ``engine`` setting accepts them."""


class EngineError(RuntimeError):
    """The engine could not start or could not run; the message says why in one line."""


ReadProgress = Callable[[int, int, int, int], None]
"""Told as an engine reads landing files: ``(files read, files to read, bytes read, bytes to read)``,
the bytes as the files were listed (a gzip file counts its stored size). Called once with nothing read
before the first file, then as files are read, perhaps from several threads (one call at a time)."""


class ReadTally:
    """The files and bytes an engine has read of a landing read, told to a ``ReadProgress`` as they grow.

    Without a ``progress`` it does nothing. A file quarantined unread (too large) counts as read: the
    tally reaches its totals when every file is accounted for.
    """

    def __init__(self, progress: ReadProgress | None, files: Sequence[str], sizes: Mapping[str, int]) -> None:
        self._progress = progress
        self._sizes = sizes
        self.files_total = len(files)
        self.bytes_total = sum(sizes.get(f, 0) for f in files)
        self.files_read = self.bytes_read = 0
        self._lock = threading.Lock()
        if progress is not None:
            progress(0, self.files_total, 0, self.bytes_total)

    def read(self, uri: str) -> None:
        """One more file read (or quarantined unread)."""
        if self._progress is None:
            return
        with self._lock:
            self.files_read += 1
            self.bytes_read += self._sizes.get(uri, 0)
            self._progress(self.files_read, self.files_total, self.bytes_read, self.bytes_total)

    def read_all(self) -> None:
        """Every file read, for an engine that cannot tell them apart (Spark reads them in its executors)."""
        if self._progress is None:
            return
        with self._lock:
            self.files_read, self.bytes_read = self.files_total, self.bytes_total
            self._progress(self.files_read, self.files_total, self.bytes_read, self.bytes_total)


@dataclass(frozen=True)
class RecordsFolder:
    """A folder of its own where an engine may store the records it reads, as it reads them.

    Each Parquet file holds records of one slice (``rules.slice_number`` of the
    feed's ``rules.slice_column``): the feed's records can then be made
    distinct a slice at a time, each slice read from its own files.
    """

    uri: str
    store: Store

    def part_uri(self, part: int, slice_number: int) -> str:
        return join_uri(self.uri, f"part-{part:05d}-slice-{slice_number}.parquet")


_SLICE_FILE = re.compile(r"-slice-(\d+)\.parquet$")


def slice_of_file(uri: str) -> int | None:
    """The slice a records file holds (``RecordsFolder.part_uri``); None for a file of any rows."""
    found = _SLICE_FILE.search(uri)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class LandingRead:
    """Typed records of one feed, the records that could not be kept, and how many were read.

    The contract every engine keeps (see ``stedi_assets.domain.validation`` for the
    rules, written once): each record read is either a row of ``records``
    (before duplicates are dropped) or a row of ``quarantine``, so
    ``records_read == len(records) + len(quarantine)``.
    """

    records: nw.LazyFrame
    """The valid records, exact duplicates included: ``source_file`` (the file read), then the declared columns."""
    records_read: int
    files: tuple[str, ...]
    quarantine: nw.LazyFrame
    """One row per record not kept: the quarantine table's columns (source_file, line, reason, raw_text)."""
    unknown_fields: Mapping[str, int] = field(default_factory=dict)
    """Fields found in the files that no column declares, with how many records carry each."""
    field_kinds: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """Those of the unknown fields that may become columns (``evolution.is_column_name``): kind of value -> records."""
    quarantined: int | None = None
    """Rows of ``quarantine``, when the engine counted them while reading (no query needed to count them again)."""
    distinct_by_file: Mapping[str, int] | None = None
    """Distinct records of each file, when the engine counted them while reading (a file without is absent)."""
    stored: tuple[str, ...] | None = None
    """The Parquet files (in the ``RecordsFolder`` given) that hold ``records``, when the engine stored
    them there while reading; None when it did not (the caller then writes ``records``)."""


class Engine(Protocol):
    name: str
    slices_landing: bool
    """Landing records are made distinct a slice at a time (``rules.slice_number``), each slice read
    from its own stored files, rather than all at once."""

    def read_landing(
        self, feed: TableSchema, files: Sequence[str], store: Store, records_to: RecordsFolder | None = None,
        sizes: Mapping[str, int] | None = None, progress: ReadProgress | None = None,
    ) -> LandingRead:
        """The records of ``files``; an engine may store them in ``records_to`` as it reads (``LandingRead.stored``).

        A file larger than the engine's ``max_file_mb`` is quarantined whole from its size (``sizes``, as
        listed, or looked up), never read into memory. ``progress`` is told the files and bytes read
        (``ReadTally``) as the engine can see them."""

    def scan(self, files: Sequence[str], schema: TableSchema, store: Store) -> nw.LazyFrame: ...

    def hold(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        """Compute ``frame`` once so that checks and the writer reuse the result."""

    def release(self, frame: nw.LazyFrame) -> None: ...

    def write(self, frame: nw.LazyFrame, schema: TableSchema, directory_uri: str, store: Store) -> list[str]:
        """Write ``frame`` as Parquet files of exactly the declared column types into ``directory_uri``.

        Returns their URIs; an Iceberg commit then makes them the table's contents.
        """

    def frame(self, rows: Sequence[tuple], schema: TableSchema) -> nw.LazyFrame:
        """A small frame of this engine from rows held in Python, one value per declared column."""

    def errors(self) -> AbstractContextManager[None]:
        """Where the engine's errors are raised as one line that says what to do (e.g. memory to raise)."""

    def close(self) -> None:
        """Release what the engine started (a Spark session); the engine starts it again if used afterwards."""
