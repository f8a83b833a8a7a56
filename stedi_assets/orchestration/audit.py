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

from collections.abc import Callable

import narwhals as nw
from dagster import AssetCheckResult, AssetCheckSeverity, AssetChecksDefinition, asset_check

from stedi_assets.domain import rules
from stedi_assets.orchestration.assets import quarantined_customers
from stedi_assets.orchestration.checks import _PERSONAL_IDENTIFIERS, row_count
from stedi_assets.orchestration.masking import mask_email
from stedi_assets.orchestration.masking import masked
from stedi_assets.orchestration.resources import StediLakehouse, TableNotPublishedError
from stedi_assets.domain.schemas import RESEARCH_CONSENT

_SAMPLE_SIZE = 5


class _Published:
    """The published tables, each read once per check, through the lakehouse resource."""

    def __init__(self, lakehouse: StediLakehouse):
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
    violations: Callable[[_Published], dict[str, tuple[nw.LazyFrame, str, bool]]],
) -> AssetChecksDefinition:
    """An audit check of ``table``.

    ``violations`` returns, for each kind of violation, the offending rows, the
    column to sample and whether that column identifies a person (masked).
    ``references`` are the other published tables it reads: if one cannot be
    read, the audit fails (consent cannot be proven).
    """

    @asset_check(
        asset=table,
        name=name,
        description=f"Audit of the published table: {description}",
        blocking=False,
    )
    def audit(lakehouse: StediLakehouse) -> AssetCheckResult:
        # Samples are masked already; an error's text could still quote an address.
        return masked(_evaluate(lakehouse))

    def _evaluate(lakehouse: StediLakehouse) -> AssetCheckResult:
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
            found = violations(published)
            metadata: dict[str, object] = {"rows": row_count(published[table])}
            for kind, (rows, column, personal) in found.items():
                count = row_count(rows)
                metadata[kind] = count
                if count:
                    metadata[f"sample_{kind}"] = _sample(rows, column, personal)
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


def _identities(frame: nw.LazyFrame, column: str) -> nw.LazyFrame:
    # Emails are compared as identities (trimmed, lower-cased), as every rule and check does.
    return frame.with_columns(rules.identity(column))


def _not_consenting(published: _Published) -> nw.LazyFrame:
    """Emails whose current landing record has no research consent, or who are held back (an unreadable record)."""
    landing = published["customer_landing"]
    current = rules.current_customer_records(landing)
    withdrawn = current.filter(nw.col(RESEARCH_CONSENT).is_null()).select("email")
    held_back = rules.held_back_customers(
        landing, quarantined_customers(published.lakehouse, published["customer_quarantine"])
    )
    return rules.distinct(nw.concat([withdrawn, held_back.select("email")]))


def _consenting_customers(table: str, reference: str | None) -> Callable[[_Published], dict]:
    def violations(published: _Published) -> dict:
        frame = _identities(published[table], "email")
        found = {
            "rows_without_consent": (frame.filter(nw.col(RESEARCH_CONSENT).is_null()), "email", True),
            "rows_whose_current_record_has_no_consent_or_is_held_back": (
                rules.rows_with_key_in(frame, "email", _not_consenting(published), "email"), "email", True,
            ),
        }
        if reference:
            found[f"rows_not_in_{reference}"] = (
                rules.rows_with_key_not_in(frame, "email", _identities(published[reference], "email"), "email"),
                "email", True,
            )
        return found

    return violations


def _consenting_readings(published: _Published) -> dict:
    readings = _identities(published["accelerometer_trusted"], "user")
    return {
        "readings_of_users_not_in_customer_trusted": (
            rules.rows_with_key_not_in(readings, "user", _identities(published["customer_trusted"], "email"), "email"),
            "user", True,
        ),
        "readings_of_users_whose_current_record_has_no_consent_or_is_held_back": (
            rules.rows_with_key_in(readings, "user", _not_consenting(published), "email"), "user", True,
        ),
    }


def _device_violations(frame: nw.LazyFrame, published: _Published) -> dict:
    devices = rules.non_consenting_devices(published["customer_landing"], published["customer_trusted"])
    return {
        "rows_of_devices_not_in_customer_curated": (
            rules.rows_with_key_not_in(frame, "serialNumber", published["customer_curated"], "serialNumber"),
            "serialNumber", False,
        ),
        "rows_of_devices_of_non_consenting_customers": (
            rules.rows_with_key_in(frame, "serialNumber", devices, "serialNumber"), "serialNumber", False,
        ),
    }


def _curated_devices(published: _Published) -> dict:
    return _device_violations(published["step_trainer_trusted"], published)


def _traceable(published: _Published) -> dict:
    frame = published["machine_learning_curated"]
    return {
        **_device_violations(frame, published),
        "rows_without_trusted_reading": (
            rules.rows_with_key_not_in(frame, "timestamp", published["accelerometer_trusted"], "timestamp"),
            "timestamp", False,
        ),
    }


def _no_identifier_columns(lakehouse: StediLakehouse) -> AssetCheckResult:
    try:
        frame = lakehouse.read_table(["machine_learning_curated"])
        # Reading one row makes the storage compare the files with the declared columns.
        frame.head(1).collect()
        columns = list(frame.collect_schema())
    except TableNotPublishedError:
        return _NOT_PUBLISHED
    except Exception as error:  # noqa: BLE001 - e.g. files with a column the table does not declare
        return _cannot_verify(error)
    found = [c for c in columns if c.lower() in _PERSONAL_IDENTIFIERS]
    return AssetCheckResult(
        passed=not found, severity=AssetCheckSeverity.ERROR, metadata={"identifier_columns": ", ".join(found) or "none"}
    )


@asset_check(
    asset="machine_learning_curated",
    name="audit_no_personal_identifiers",
    description="Audit of the published table: no column identifies a person (name, email, phone, birthday, user).",
    blocking=False,
)
def audit_no_personal_identifiers(lakehouse: StediLakehouse) -> AssetCheckResult:
    return masked(_no_identifier_columns(lakehouse))


_CONSENT = ("customer_landing", "customer_quarantine")

AUDIT_CHECKS: list[AssetChecksDefinition] = [
    _audit(
        "customer_trusted", "audit_consenting_customers_only",
        "every customer has research consent, also in their current landing record, and none is held back.",
        _CONSENT, _consenting_customers("customer_trusted", None),
    ),
    _audit(
        "customer_curated", "audit_consenting_customers_only",
        "every customer is in customer_trusted and has research consent, also in their current landing record.",
        (*_CONSENT, "customer_trusted"), _consenting_customers("customer_curated", "customer_trusted"),
    ),
    _audit(
        "accelerometer_trusted", "audit_consenting_readings_only",
        "every reading's user is in customer_trusted and their current landing record has research consent.",
        (*_CONSENT, "customer_trusted"), _consenting_readings,
    ),
    _audit(
        "step_trainer_trusted", "audit_curated_devices_only",
        "every reading's device belongs to a customer in customer_curated and to no non-consenting customer.",
        ("customer_landing", "customer_trusted", "customer_curated"), _curated_devices,
    ),
    _audit(
        "machine_learning_curated", "audit_traceable_to_consenting_customers",
        "every row's device is a curated customer's and no non-consenting customer's, "
        "and its accelerometer time is a trusted reading's.",
        ("customer_landing", "customer_trusted", "customer_curated", "accelerometer_trusted"), _traceable,
    ),
    audit_no_personal_identifiers,
]
"""Every audit check, one per (published table, invariant)."""
