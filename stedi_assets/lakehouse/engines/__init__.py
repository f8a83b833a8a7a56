"""Engines compute the zone rules; each one executes the same narwhals rules.

An engine knows how to read landing JSON into a typed frame, how to scan and
write the Parquet data files of a table, and how to hold a computed frame while it is checked and
written. Everything else (rules, checks, storage layout) is engine-neutral.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
        sizes: Mapping[str, int] | None = None,
    ) -> LandingRead:
        """The records of ``files``; an engine may store them in ``records_to`` as it reads (``LandingRead.stored``).

        A file larger than the engine's ``max_file_mb`` is quarantined whole from its size (``sizes``, as
        listed, or looked up), never read into memory."""

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
