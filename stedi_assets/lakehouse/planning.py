"""Which tables are out of date, and why: what ``stedi run`` materializes.

A feed's landing and quarantine tables are out of date when its landing
step has something to do (``ingestion.plan_deliveries``, the same plan the
step makes): a landing file is new, changed or removed since the delivery
ledger recorded it, a rejected delivery is still there or gone, an entry is
refused that the ledger does not record yet (or the tables were never
published). A derived table is out of date when it was
never published, when an input table has a newer snapshot than the one it
was computed from (its ``stedi.upstream.<table>`` properties), or when it
was computed under other rule settings (``stedi.rules.<setting>``). Every
table downstream of an out-of-date table is out of date too.

This is the one answer to "what changed": ``stedi run`` materializes what it
names, the landing sensor requests a run of the same tables, and each landing
step reads the files its own ``plan_deliveries`` names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from stedi_assets.lakehouse.ingestion import plan_deliveries
from stedi_assets.lakehouse.ledger import empty_ledger, feed_deliveries, ledger_from_files, read_ledger
from stedi_assets.lakehouse.snapshots import CurrentSnapshot, current_snapshots, data_files
from stedi_assets.lakehouse.storage import LandingError
from stedi_assets.lakehouse.tables import UPSTREAM
from stedi_assets.domain.schemas import DELIVERY_LEDGER, FEEDS


@dataclass(frozen=True)
class Staleness:
    """The tables to materialize (asset names, in no order) and, for each table out of date on its own, why."""

    tables: frozenset[str]
    reasons: Mapping[str, str]
    rows: Mapping[str, int]
    """Rows of each published table's current snapshot."""
    landing: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Each feed's landing entries as listed: URI -> fingerprint (and why it is refused, if it is)."""

    @property
    def feeds(self) -> list[str]:
        """The feeds whose landing step has something to do."""
        return [feed for feed in FEEDS if f"{feed}_landing" in self.tables]

    def feed_versions(self) -> dict[str, str]:
        """Each listed feed's ``landing_version``."""
        return {feed: _digest(listed) for feed, listed in self.landing.items()}

    def digest(self) -> str:
        """Names this state: the tables out of date and the landing zone they are out of date with."""
        state = {"tables": sorted(self.tables), "landing": self.landing}
        return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def listed_versions(listed: Mapping) -> dict[str, str]:
    """A feed's landing entries as listed: URI -> fingerprint, and why it is refused if it is."""
    return {uri: v.fingerprint + (f" refused: {v.refused}" if v.refused else "") for uri, v in listed.items()}


def landing_version(listed: Mapping) -> str:
    """A feed's landing zone as one value: a digest of each entry's URI and fingerprint (and refusal).

    It changes exactly when a file is added, changed or removed, or an entry is refused or gone: it is
    the data version of the feed's observable source asset in Dagster.
    """
    return _digest(listed_versions(listed))


def _digest(versions: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:16]


def feed_version(lakehouse, feed: str) -> str:
    """``landing_version`` of ``feed``'s landing files now; a feed that cannot be listed gets a version
    naming why, and its landing step fails on it, in one line."""
    try:
        return landing_version(lakehouse.landing_versions(feed))
    except LandingError:
        return landing_version({})
    except Exception as error:  # noqa: BLE001
        return f"unlisted: {type(error).__name__}"


def _landing_reason(plan, known) -> str:
    counts = {"new": len(plan.new), "changed": len(plan.changed), "removed": len(plan.removed)}
    files = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    parts = [f"{files} landing file(s)"] if files else []
    again = sum(uri in known.rejected for uri in plan.new + plan.changed)
    if again:
        parts.append(f"{again} of them rejected before and read again")
    if plan.dropped_rejected:
        parts.append(f"{len(plan.dropped_rejected)} rejected file(s) gone")
    if plan.refused or plan.refused_gone:
        parts.append(f"{len(plan.refused) + len(plan.refused_gone)} refused entry(ies) to record")
    return ", ".join(parts)


def out_of_date(lakehouse, upstream: Mapping[str, frozenset[str]], full_refresh: bool = False) -> Staleness:
    """``upstream``: each table's input tables (from the asset graph)."""
    reasons: dict[str, str] = {}
    ledger, snapshots = _read_directly(lakehouse, upstream) or _read_with_pyiceberg(lakehouse, upstream)
    landing_zone: dict[str, dict[str, str]] = {}
    for feed in FEEDS:
        landing, quarantine = f"{feed}_landing", f"{feed}_quarantine"
        try:
            listed = lakehouse.landing_versions(feed)
        except LandingError:
            listed = {}  # no file left: each one it had is removed (and its step says so, in one line)
        except Exception:  # noqa: BLE001
            listed = None
        if listed is not None:
            landing_zone[feed] = listed_versions(listed)
        if full_refresh:
            reasons[landing] = "full refresh"
        elif landing not in snapshots or quarantine not in snapshots or ledger is None:
            reasons[landing] = "not published yet"
        elif listed is None:
            reasons[landing] = "its landing files cannot be listed"
        else:
            known = feed_deliveries(ledger, feed)
            plan = plan_deliveries(listed, known, published=True, full_refresh=False)
            if plan.has_changes:
                reasons[landing] = _landing_reason(plan, known)
    rules = lakehouse.rule_properties()
    for table, inputs in upstream.items():
        if not inputs or table in reasons:
            continue
        snapshot = snapshots.get(table)
        if snapshot is None:
            reasons[table] = "not published yet"
            continue
        recorded = snapshot.properties
        settings = [k.rsplit(".", 1)[-1] for k, v in rules.items() if recorded.get(k) != v]
        newer = [u for u in sorted(inputs) if u in snapshots and recorded.get(f"{UPSTREAM}{u}") != str(snapshots[u].snapshot_id)]
        if settings:
            reasons[table] = f"computed under other settings: {', '.join(settings)}"
        elif newer:
            reasons[table] = f"computed from an earlier snapshot of {', '.join(newer)}"
    tables = set(reasons)
    for feed in FEEDS:
        if f"{feed}_landing" in tables:
            tables.add(f"{feed}_quarantine")
    grew = True
    while grew:
        downstream = {t for t, inputs in upstream.items() if inputs & tables} - tables
        tables |= downstream
        grew = bool(downstream)
    rows = {t: int(s.properties.get("total-records", 0)) for t, s in snapshots.items()}
    return Staleness(frozenset(tables), reasons, rows, landing_zone)


def _read_directly(lakehouse, tables) -> tuple[pl.DataFrame, dict[str, CurrentSnapshot]] | None:
    """The ledger's rows and each table's current snapshot, read without pyiceberg (``snapshots``), or None
    when that cannot be done with certainty."""
    found = current_snapshots(lakehouse.catalog_settings(), [*tables, DELIVERY_LEDGER.name])
    if found is None:
        return None
    ledger_snapshot = found.pop(DELIVERY_LEDGER.name, None)
    if ledger_snapshot is None:
        return empty_ledger(), found
    files = data_files(ledger_snapshot)
    if files is None:
        return None
    try:
        return ledger_from_files(files), found
    except Exception:  # noqa: BLE001 - pyiceberg's path reads it or says why
        return None


def _read_with_pyiceberg(lakehouse, tables) -> tuple[pl.DataFrame | None, dict[str, CurrentSnapshot]]:
    """The ledger's rows (None when it cannot be read) and each table's current snapshot, through the catalog."""
    # What cannot be read here (a landing zone or catalog that is not there) makes a table out
    # of date: its step then fails on it, in one line, as a run does.
    try:
        ledger = read_ledger(lakehouse)[0]
    except Exception:  # noqa: BLE001
        ledger = None
    snapshots: dict[str, CurrentSnapshot] = {}
    for table in tables:
        try:
            snapshot = lakehouse.load_table(table).metadata.current_snapshot()
        except Exception:  # noqa: BLE001
            continue
        if snapshot is not None:
            properties = dict(snapshot.summary.additional_properties) if snapshot.summary else {}
            snapshots[table] = CurrentSnapshot(snapshot.snapshot_id, properties, snapshot.manifest_list)
    return ledger, snapshots
