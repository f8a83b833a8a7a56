"""Audit checks: the privacy invariants re-verified on the *published* tables.

The in-step checks (checks.py) judge a table before it is published. These
audit checks read what readers actually see, through the lakehouse resource,
so they also catch a table changed after publication (a restored backup, a
hand-edited file, a writer outside the pipeline). Each is a separate
``@asset_check``: it runs on its own, from the UI's Execute button, in
``stedi_audit_job`` and on its schedule, without recomputing any table.

They are ERROR checks that block nothing (there is nothing left to block: the
table is already published); a failure is reported by the alert sensors.
A table that is not published yet passes (nothing is exposed); a reference
table that is missing while the audited one is published fails (consent cannot
be proven, so privacy wins).
"""

from __future__ import annotations

import narwhals as nw
from dagster import AssetCheckResult, AssetCheckSeverity, AssetChecksDefinition, ResourceParam, asset_check

from stedi_assets.domain import invariants, rules
from stedi_assets.orchestration.assets import quarantined_customers
from stedi_assets.orchestration.checks import row_count
from stedi_assets.orchestration.masking import mask_email
from stedi_assets.orchestration.masking import masked
from stedi_assets.lakehouse.catalog import TableNotPublishedError
from stedi_assets.lakehouse.erasure import IDENTITY_COLUMNS, traces
from stedi_assets.lakehouse.lakehouse import Lakehouse

_SAMPLE_SIZE = 5


class _Published:
    """The published tables, each read once per check, through the lakehouse resource."""

    def __init__(self, lakehouse: ResourceParam[Lakehouse]):
        self.lakehouse = lakehouse
        self._frames: dict[str, nw.LazyFrame] = {}

    def __getitem__(self, table: str) -> nw.LazyFrame:
        if table not in self._frames:
            self._frames[table] = self.lakehouse.read_table([table])
        return self._frames[table]


def _sample(frame: nw.LazyFrame, column: str, mask: bool) -> str:
    values = rules.distinct(frame.select(column)).head(_SAMPLE_SIZE).collect()[column].to_list()
    return ", ".join(mask_email(v) if mask else str(v) for v in values)


def _audit(
    table: str,
    name: str,
    description: str,
    references: tuple[str, ...],
    invariant: invariants.Invariant,
) -> AssetChecksDefinition:
    """An audit check of ``table``: ``invariant`` judged on the published table.

    The invariant is the one the in-step check judges (invariants.py); the
    published ``references`` stand in for the step's inputs, the customer
    quarantine read as the frame of quarantined customer records. If a
    reference cannot be read, the audit fails (consent cannot be proven).
    """

    @asset_check(
        asset=table,
        name=name,
        description=f"Audit of the published table: {description}",
        blocking=False,
    )
    def audit(lakehouse: ResourceParam[Lakehouse]) -> AssetCheckResult:
        # Samples are masked already; an error's text could still quote an address.
        return masked(_evaluate(lakehouse))

    def _evaluate(lakehouse: ResourceParam[Lakehouse]) -> AssetCheckResult:
        published = _Published(lakehouse)
        try:
            published[table]
        except TableNotPublishedError:
            return _NOT_PUBLISHED
        except Exception as error:  # noqa: BLE001 - a table that cannot be read cannot be vouched for
            return _cannot_verify(error)
        try:
            for reference in references:
                # Read first, so that a missing reference table is named as the problem.
                published[reference]
            found = _violations(published, table, references, invariant)
            metadata: dict[str, object] = {"rows": row_count(published[table])}
            for kind, violation in found.items():
                count = row_count(violation.rows)
                metadata[kind] = count
                if count:
                    metadata[f"sample_{kind}"] = _sample(violation.rows, violation.column, violation.personal)
        except Exception as error:  # noqa: BLE001 - a table that cannot be read cannot be vouched for
            return _cannot_verify(error)
        passed = all(metadata[kind] == 0 for kind in found)
        return AssetCheckResult(passed=passed, severity=AssetCheckSeverity.ERROR, metadata=metadata)

    return audit


_NOT_PUBLISHED = AssetCheckResult(passed=True, severity=AssetCheckSeverity.ERROR, metadata={"published": False})


def _cannot_verify(error: Exception) -> AssetCheckResult:
    # Privacy first: a table (or a reference table) that cannot be read fails
    # the audit, with the reason. The message names tables and columns, not values.
    reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.ERROR,
        metadata={"problem": f"cannot verify: {type(error).__name__}: {reason}"},
    )


def _violations(
    published: _Published, table: str, references: tuple[str, ...], invariant: invariants.Invariant
) -> dict[str, invariants.Violation]:
    frames = {reference: published[reference] for reference in references}
    if "customer_quarantine" in frames:
        frames["quarantined_customers"] = quarantined_customers(published.lakehouse, frames.pop("customer_quarantine"))
    found = invariant(published[table], frames)
    return {_AUDIT_NAMES.get(kind, kind): violation for kind, violation in found.items()}


# The audit has reported these kinds under its own names from the start; alerts
# and dashboards read them, so the names stay.
_AUDIT_NAMES = {
    "readings_of_non_consenting_users": "readings_of_users_not_in_customer_trusted",
    "readings_of_other_devices": "rows_of_devices_not_in_customer_curated",
    "rows_of_uncurated_devices": "rows_of_devices_not_in_customer_curated",
    "readings_of_devices_of_non_consenting_customers": "rows_of_devices_of_non_consenting_customers",
}


def _no_identifier_columns(lakehouse: ResourceParam[Lakehouse]) -> AssetCheckResult:
    try:
        frame = lakehouse.read_table(["machine_learning_curated"])
        # Reading one row makes the storage compare the files with the declared columns.
        frame.head(1).collect()
        columns = list(frame.collect_schema())
    except TableNotPublishedError:
        return _NOT_PUBLISHED
    except Exception as error:  # noqa: BLE001 - e.g. files with a column the table does not declare
        return _cannot_verify(error)
    found = invariants.identifier_columns(columns)
    return AssetCheckResult(
        passed=not found, severity=AssetCheckSeverity.ERROR, metadata={"identifier_columns": ", ".join(found) or "none"}
    )


@asset_check(
    asset="machine_learning_curated",
    name="audit_no_personal_identifiers",
    description="Audit of the published table: no column identifies a person (name, email, phone, birthday, user).",
    blocking=False,
)
def audit_no_personal_identifiers(lakehouse: ResourceParam[Lakehouse]) -> AssetCheckResult:
    return masked(_no_identifier_columns(lakehouse))


def _erased_identities_absent(table: str) -> AssetChecksDefinition:
    """The audit of ``table``'s files against the erasure register (``erasure.traces``)."""

    @asset_check(
        asset=table,
        name="audit_erased_identities_absent",
        description="Audit of the published table: no row of any retained snapshot belongs to a person erased on "
        "request (its identity column hashed and compared with erasure_register).",
        blocking=False,
    )
    def audit(lakehouse: ResourceParam[Lakehouse]) -> AssetCheckResult:
        try:
            found = traces(lakehouse, table)
        except TableNotPublishedError:
            return _NOT_PUBLISHED
        except Exception as error:  # noqa: BLE001 - a table that cannot be read cannot be vouched for
            return masked(_cannot_verify(error))
        # Counts and snapshot ids only: never a value of the rows found.
        return AssetCheckResult(
            passed=found.rows == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "rows_of_erased_identities": found.rows,
                "files_holding_them": found.files,
                "snapshots_holding_them": ", ".join(str(s) for s in found.snapshots) or "none",
            },
        )

    return audit


_CONSENT = ("customer_landing", "customer_quarantine")

AUDIT_CHECKS: list[AssetChecksDefinition] = [
    _audit(
        "customer_trusted", "audit_consenting_customers_only",
        "every customer has research consent, also in their current landing record, and none is held back.",
        _CONSENT, invariants.consenting_customers,
    ),
    _audit(
        "customer_curated", "audit_consenting_customers_only",
        "every customer is in customer_trusted and has research consent, also in their current landing record.",
        (*_CONSENT, "customer_trusted"), invariants.consenting_customers,
    ),
    _audit(
        "accelerometer_trusted", "audit_consenting_readings_only",
        "every reading's user is in customer_trusted and their current landing record has research consent.",
        (*_CONSENT, "customer_trusted"), invariants.consenting_readings,
    ),
    _audit(
        "step_trainer_trusted", "audit_curated_devices_only",
        "every reading's device belongs to a customer in customer_curated and to no non-consenting customer.",
        ("customer_landing", "customer_trusted", "customer_curated"),
        invariants.curated_devices,
    ),
    _audit(
        "machine_learning_curated", "audit_traceable_to_consenting_customers",
        "every row's device is a curated customer's and no non-consenting customer's, "
        "and its accelerometer time is a trusted reading's.",
        ("customer_landing", "customer_trusted", "customer_curated", "accelerometer_trusted"),
        invariants.traceable,
    ),
    audit_no_personal_identifiers,
    *(_erased_identities_absent(table) for table in IDENTITY_COLUMNS),
]
"""Every audit check, one per (published table, invariant)."""
