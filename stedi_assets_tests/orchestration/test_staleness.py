"""Dagster's own staleness agrees with ``stedi run``: what the UI marks stale or missing is what
``planning.out_of_date`` names, whatever changed.

The feeds are observable source assets whose data version is a digest of their
files' fingerprints (observed by the landing sensor and by each run before its
landing steps); a landing table records the feed version it read, a derived
table its inputs' data versions and, as its code version, the rule settings.
The UI's status is read as the webserver reads it, with Dagster's stale status
resolver over the code location's asset graph and a persistent instance.
"""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey, DagsterInstance, RunRequest
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from stedi_assets.definitions import build_definitions
from stedi_assets.domain.schemas import FEEDS, TABLES
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.lakehouse.planning import out_of_date
from stedi_assets.orchestration.assets import ZONE_UPSTREAM
from stedi_assets_tests.orchestration.test_landing_sensor import SensorHarness, local_landing  # noqa: F401

ZONE_TABLES = [table for table in TABLES if TABLES[table].zone != "operations"]


def step_of(table: str) -> str:
    """The step that materializes ``table``: a feed's landing and quarantine tables share one."""
    for feed in FEEDS:
        if table == f"{feed}_quarantine":
            return f"{feed}_landing"
    return table


def ui_out_of_date(instance: DagsterInstance, overrides: dict[str, str] | None = None) -> set[str]:
    """The steps of the tables the UI shows as stale or never materialized."""
    defs = build_definitions(overrides)
    resolver = get_stale_status_resolver(instance, list(defs.assets))
    statuses = {table: resolver.get_status(AssetKey(table)) for table in ZONE_TABLES}
    return {step_of(table) for table, status in statuses.items() if status != StaleStatus.FRESH}


def stedi_out_of_date(lakehouse: Lakehouse) -> set[str]:
    """The steps of the tables ``stedi run`` finds out of date on their own (not only for being downstream)."""
    return set(out_of_date(lakehouse, ZONE_UPSTREAM).reasons)


def test_the_ui_marks_stale_exactly_what_stedi_run_would_run(local_landing, instance, tmp_path: Path):  # noqa: F811
    harness = SensorHarness(instance)
    lakehouse = Lakehouse(landing_uri=str(local_landing), lakehouse_uri=str(tmp_path / "lakehouse"))

    # Nothing published: every table is missing, and out of date.
    assert ui_out_of_date(instance) == stedi_out_of_date(lakehouse) == {step_of(t) for t in ZONE_TABLES}
    assert harness.execute(harness.tick()).success
    assert ui_out_of_date(instance) == stedi_out_of_date(lakehouse) == set()

    # A new accelerometer file, once the sensor has looked: its landing table, and nothing else on its own.
    source = next((local_landing / "accelerometer").iterdir())
    extra = local_landing / "accelerometer" / "accelerometer-extra.json"
    extra.write_bytes(source.read_bytes()[:2000].rsplit(b"\n", 1)[0] + b"\n")
    request = harness.tick()
    assert [o.asset_key.path[-1] for o in harness.observed] == ["accelerometer_feed"]
    assert ui_out_of_date(instance) == stedi_out_of_date(lakehouse) == {"accelerometer_landing"}
    assert harness.execute(request).success
    assert ui_out_of_date(instance) == stedi_out_of_date(lakehouse) == set()

    # A new customer file ingested by its landing step alone: the tables computed from customer_landing
    # are then out of date, in both views.
    (local_landing / "customer" / "customer-extra.json").write_bytes(
        next((local_landing / "customer").iterdir()).read_bytes()[:1500].rsplit(b"\n", 1)[0] + b"\n"
    )
    request = harness.tick()
    assert isinstance(request, RunRequest)
    landing_only = RunRequest(
        asset_selection=[k for k in request.asset_selection if k.path[-1].startswith("customer_") and
                         k.path[-1] != "customer_trusted" and k.path[-1] != "customer_curated"],
        asset_check_keys=[k for k in request.asset_check_keys if k.asset_key.path[-1] == "customer_landing"],
    )
    assert harness.execute(landing_only).success
    assert ui_out_of_date(instance) == stedi_out_of_date(lakehouse) == {"customer_trusted", "step_trainer_trusted"}
    assert harness.execute(harness.tick()).success
    assert ui_out_of_date(instance) == stedi_out_of_date(lakehouse) == set()

    # Other rule settings: every derived table is computed under other settings (its code version).
    other = Lakehouse(landing_uri=str(local_landing), lakehouse_uri=str(tmp_path / "lakehouse"), ml_join="same_customer")
    derived = {table for table, inputs in ZONE_UPSTREAM.items() if inputs}
    assert ui_out_of_date(instance, {"ml_join": "same_customer"}) == stedi_out_of_date(other) == derived

    # A rejected delivery: its landing table stays out of date until the file is removed, and the
    # removal puts its quarantine (the same step) out of date until the next run.
    bad = local_landing / "step_trainer" / "step_trainer-bad.json"
    bad.write_text("".join(f"not a reading {n}\n" for n in range(400)))
    result = harness.execute(harness.tick())
    assert "step_trainer_landing" not in {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert ui_out_of_date(instance) == stedi_out_of_date(lakehouse) == {"step_trainer_landing"}
    bad.unlink()
    request = harness.tick()
    assert ui_out_of_date(instance) == stedi_out_of_date(lakehouse) == {"step_trainer_landing"}
    assert harness.execute(request).success
    assert ui_out_of_date(instance) == stedi_out_of_date(lakehouse) == set()
