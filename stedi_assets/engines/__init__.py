"""Engines compute the zone rules; each one executes the same narwhals rules.

An engine knows how to read landing JSON into a typed frame, how to scan and
write Parquet, and how to hold a computed frame while it is checked and
written. Everything else (rules, checks, storage layout) is engine-neutral.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import narwhals as nw

from stedi_assets.schemas import TableSchema
from stedi_assets.storage import Store

ENGINE_NAMES = ("polars", "spark")


class EngineError(RuntimeError):
    """The engine could not start or could not run; the message says why in one line."""


@dataclass(frozen=True)
class LandingRead:
    """Typed records of one feed, and how many records were read to make them."""

    records: nw.LazyFrame
    records_read: int
    files: tuple[str, ...]


class Engine(Protocol):
    name: str

    def read_landing(self, feed: TableSchema, files: Sequence[str], store: Store) -> LandingRead: ...

    def scan(self, files: Sequence[str], schema: TableSchema, store: Store) -> nw.LazyFrame: ...

    def hold(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        """Compute ``frame`` once so that checks and the writer reuse the result."""

    def release(self, frame: nw.LazyFrame) -> None: ...

    def write(self, frame: nw.LazyFrame, directory_uri: str, store: Store) -> list[str]:
        """Write ``frame`` as Parquet files into ``directory_uri``; return their URIs."""
