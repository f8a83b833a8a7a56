"""Fixtures shared by every test: the real STEDI data set and lakehouses in tmp_path."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from dagster import ExecuteInProcessResult, materialize
from moto.server import ThreadedMotoServer

from stedi_assets.definitions import zone_assets
from stedi_assets.orchestration.io_manager import lakehouse_io_manager
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.orchestration.resources import StediLakehouse

REPOSITORY = Path(__file__).resolve().parents[1]


def reference_landing() -> Path:
    """The real STEDI landing data, read in place beside the repository (never copied into it)."""
    return Path(os.environ.get("STEDI_REFERENCE_LANDING", REPOSITORY.parent / "shared" / "stedi" / "landing"))


@pytest.fixture(scope="session")
def stedi_landing() -> Path:
    path = reference_landing()
    if not (path / "customer").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the real STEDI data set is missing at {path}; CI must run the acceptance tests")
        pytest.skip(f"the real STEDI data set is not at {path}")
    return path


def place_landing_file(source: Path, target: Path) -> None:
    """``source`` at ``target`` as a regular file: a hard link where the file system allows one, else a copy.

    Never a symbolic link: a landing step refuses those (it reads only files of its own folder).
    """
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def resources_for(lakehouse: Lakehouse) -> dict[str, object]:
    """The resources of a run on ``lakehouse``'s settings."""
    return {"lakehouse": StediLakehouse.configured_as(lakehouse), "io_manager": lakehouse_io_manager}


def materialize_all(lakehouse: Lakehouse, selection: str | list[str] | None = None) -> ExecuteInProcessResult:
    return materialize(zone_assets, resources=resources_for(lakehouse), selection=selection, raise_on_error=False)


@pytest.fixture
def make_lakehouse(tmp_path: Path) -> Callable[..., Lakehouse]:
    def make(landing: Path | str, **settings: str) -> Lakehouse:
        settings.setdefault("lakehouse_uri", str(tmp_path / "lakehouse"))
        return Lakehouse(landing_uri=str(landing), **settings)

    return make


def independent_catalog(lakehouse_root: Path):
    """A pyiceberg SqlCatalog on ``{lakehouse}/catalog.db``, opened as any other reader would open it."""
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog("stedi", uri=f"sqlite:///{lakehouse_root / 'catalog.db'}", init_catalog_tables="false")


def stored_table(lakehouse_root: Path, table: str, snapshot_id: int | None = None) -> pl.DataFrame:
    """The table's rows at ``snapshot_id`` (default: current), read by an independent pyiceberg client, sorted."""
    iceberg_table = independent_catalog(lakehouse_root).load_table(f"stedi.{table}")
    frame = pl.from_arrow(iceberg_table.scan(snapshot_id=snapshot_id).to_arrow())
    return frame.sort(frame.columns)


def check_outcomes(result: ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    """(table, check) -> passed, for every check evaluated in ``result``."""
    return {(e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()}


def published_rows(result: ExecuteInProcessResult) -> dict[str, int]:
    return {
        e.asset_key.path[-1]: e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
    }


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a local AWS (moto) server on 127.0.0.1, an ephemeral port, fresh for each module."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
