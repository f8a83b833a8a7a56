"""The delivery ledger on its own: what each status retires, and a ledger of an older schema.

Covers ``record_deliveries`` and ``feed_deliveries`` against a real local
lakehouse (no landing step runs); the sequences through whole pipelines are in
``stedi_assets_tests/engines/test_rejected_deliveries.py``.
"""

from __future__ import annotations

import polars as pl

from stedi_assets.lakehouse.ledger import (
    CURRENT,
    REFUSED,
    REJECTED,
    REMOVED,
    Delivery,
    feed_deliveries,
    read_ledger,
    record_deliveries,
)
from stedi_assets.lakehouse.tables import iceberg_schema, table_properties
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.domain.schemas import DELIVERY_LEDGER, TableSchema
from stedi_assets_tests.conftest import stored_table


def delivery(uri: str, status: str = CURRENT, reason: str | None = None, fingerprint: str = "v1") -> Delivery:
    return Delivery(uri, 10, fingerprint, 2, 2, 0, "records/" + uri, status, reason)


def statuses(lakehouse: Lakehouse) -> list[tuple[str, str]]:
    ledger = read_ledger(lakehouse)[0].sort("uri", "ingested_at", "status")
    return list(zip(ledger["uri"], ledger["status"]))


def test_a_rejected_version_never_retires_the_current_one(tmp_path):
    lakehouse = Lakehouse(landing_uri=str(tmp_path / "landing"), lakehouse_uri=str(tmp_path / "lakehouse"))
    record_deliveries(lakehouse, "step_trainer", [delivery("a.json")], {}, "run-1")
    record_deliveries(
        lakehouse, "step_trainer",
        [delivery("a.json", REJECTED, "held back", "v2"), delivery("link.json", REFUSED, "symbolic link")], {}, "run-2",
    )

    known = feed_deliveries(read_ledger(lakehouse)[0], "step_trainer")
    # The landing table still holds version 1: it stays current beside the rejected version 2.
    assert known.current["a.json"]["fingerprint"] == "v1"
    assert known.rejected["a.json"]["reason"] == "held back"
    assert known.refused["link.json"]["reason"] == "symbolic link"

    # Read again and rejected again: the earlier rejected row is replaced, the current one kept.
    record_deliveries(lakehouse, "step_trainer", [delivery("a.json", REJECTED, "held back", "v2")], {}, "run-3")
    assert statuses(lakehouse) == [
        ("a.json", "current"), ("a.json", "replaced"), ("a.json", "rejected"), ("link.json", "refused"),
    ]

    # Published at last: the new version replaces both; the link, gone, is retired as removed.
    record_deliveries(lakehouse, "step_trainer", [delivery("a.json", fingerprint="v3")], {"link.json": REMOVED}, "run-4")
    assert statuses(lakehouse) == [
        ("a.json", "replaced"), ("a.json", "replaced"), ("a.json", "replaced"), ("a.json", "current"),
        ("link.json", "removed"),
    ]
    assert read_ledger(lakehouse)[0].filter(pl.col("status") == "replaced")["retired_at"].null_count() == 0


def test_a_ledger_without_the_reason_column_gains_it(tmp_path):
    lakehouse = Lakehouse(landing_uri=str(tmp_path / "landing"), lakehouse_uri=str(tmp_path / "lakehouse"))
    # The ledger as it was before `reason` (and `records_erased`) were declared, with one row written then.
    older = TableSchema(
        DELIVERY_LEDGER.name, DELIVERY_LEDGER.zone, DELIVERY_LEDGER.grain,
        tuple(c for c in DELIVERY_LEDGER.columns if c.name not in ("reason", "records_erased")), DELIVERY_LEDGER.rule,
    )
    catalog = lakehouse.catalog(create=True)
    catalog.create_namespace("stedi")
    table = catalog.create_table(
        "stedi.delivery_ledger", iceberg_schema(older), location=lakehouse.table_location(["delivery_ledger"]),
        properties=table_properties(older),
    )
    row = pl.DataFrame(
        [("step_trainer", "old.json", 10, "v0", 1, 1, 0, 0, 1, "run-0", CURRENT, None, "records/old")],
        schema=older.polars_schema, orient="row",
    )
    table.append(row.to_arrow())

    record_deliveries(lakehouse, "step_trainer", [delivery("new.json", REJECTED, "held back")], {}, "run-1")

    stored = stored_table(tmp_path / "lakehouse", "delivery_ledger")
    assert stored.columns == [c.name for c in DELIVERY_LEDGER.columns]
    assert dict(zip(stored["uri"], stored["reason"])) == {"old.json": None, "new.json": "held back"}
    assert dict(zip(stored["uri"], stored["records_erased"])) == {"old.json": None, "new.json": 0}
