"""What the lakehouse library asks of the object that holds a lakehouse's settings and clients.

The library (ingestion, the ledger, planning, query, maintenance) takes such
an object and never imports where it comes from: the Dagster layer's
``orchestration.resources.StediLakehouse`` is one, built from the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import narwhals as nw

from stedi_assets.lakehouse.catalog import CatalogSettings
from stedi_assets.lakehouse.engines import Engine, LandingRead
from stedi_assets.lakehouse.storage import FileVersion, Store


class Lakehouse(Protocol):
    landing_uri: str
    lakehouse_uri: str
    snapshot_max_age_hours: int
    snapshots_min_kept: int
    orphan_min_age_hours: int

    def feed_uri(self, feed: str) -> str: ...

    def landing_versions(self, feed: str) -> dict[str, FileVersion]: ...

    def read_landing(
        self, feed: str, files: list[str] | None = None, records_to: str | None = None,
        sizes: Mapping[str, int] | None = None,
    ) -> LandingRead: ...

    def store_for(self, uri: str) -> Store: ...

    def get_engine(self) -> Engine: ...

    def catalog_settings(self) -> CatalogSettings: ...

    def catalog(self, create: bool = True) -> Any: ...

    def table_location(self, asset_path: list[str]) -> str: ...

    def load_table(self, table: str, create: bool = False) -> Any: ...

    def read_table(self, asset_path: list[str], snapshot_id: int | None = None, iceberg_table=None) -> nw.LazyFrame: ...

    def write_files(self, frame: nw.LazyFrame, schema, folder: str) -> list[str]: ...

    def rule_properties(self) -> dict[str, str]: ...
