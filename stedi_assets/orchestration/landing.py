"""Landing-zone bookkeeping: quarantine tables, reconciliation and the quarantine check.

Every record read from a feed's files is accounted for exactly once::

    records read = rows kept + records quarantined + exact duplicates dropped

and that balance is recorded on the landing table's materialization.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import narwhals as nw
from dagster import AssetCheckSeverity, MetadataValue

from stedi_assets.orchestration.masking import mask_emails
# The share of a feed's records that may be quarantined; the checks take the default from here.
from stedi_assets.settings import DEFAULT_QUARANTINE_MAX_SHARE  # noqa: F401

_SAMPLES = 5


def landing_metadata(records_read: int, rows: int, quarantined: int, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The reconciliation of a landing table, as materialization metadata."""
    duplicates = records_read - quarantined - rows
    unknown: Mapping[str, int] = extra.get("unknown_fields", {})
    return {
        "records_read": MetadataValue.int(records_read),
        "rows_kept": MetadataValue.int(rows),
        "records_quarantined": MetadataValue.int(quarantined),
        "duplicate_records_dropped": MetadataValue.int(duplicates),
        "reconciliation": MetadataValue.text(
            f"{records_read} read = {rows} kept + {quarantined} quarantined + {duplicates} exact duplicates dropped"
        ),
        # Field names come from the delivered records: a name may be an email address.
        "unknown_fields": MetadataValue.text(
            ", ".join(f"{mask_emails(name)}: {count}" for name, count in unknown.items()) or "none"
        ),
    }


def quarantine_samples(quarantine: nw.LazyFrame, limit: int = _SAMPLES) -> list[str]:
    """``reason at file:line`` for the first quarantined records; never their raw text."""
    rows = (
        quarantine.select("source_file", "line", "reason")
        .sort("source_file", "line")
        .head(limit)
        .collect()
        .rows()
    )
    return [f"{reason} at {source.rsplit('/', 1)[-1]}:{line}" for source, line, reason in rows]


def check_quarantined_records(ci) -> tuple[bool, dict[str, object], AssetCheckSeverity]:
    """Passes with no quarantined record; WARN with some; ERROR above the allowed share."""
    quarantine, quarantined = ci.quarantine, ci.quarantined
    read = ci.records_read or 0
    share = quarantined / read if read else 0.0
    metadata: dict[str, object] = {
        "records_quarantined": quarantined,
        "records_read": read,
        "share": MetadataValue.float(share),
        "max_share": MetadataValue.float(ci.quarantine_max_share),
    }
    if not quarantined:
        return True, metadata, AssetCheckSeverity.WARN
    by_reason = (
        quarantine.group_by("reason").agg(nw.len().alias("records")).sort("records", "reason", descending=[True, False])
        .collect().rows()
    )
    metadata["by_reason"] = "; ".join(f"{reason}: {count}" for reason, count in by_reason)
    metadata["samples"] = "; ".join(quarantine_samples(quarantine))
    above = share > ci.quarantine_max_share
    if above:
        metadata["problem"] = f"{share:.2%} of the records quarantined, more than the allowed {ci.quarantine_max_share:.2%}"
        by_file = (
            quarantine.group_by("source_file").agg(nw.len().alias("records"))
            .sort("records", "source_file", descending=[True, False]).head(_SAMPLES).collect().rows()
        )
        metadata["files"] = "; ".join(f"{source.rsplit('/', 1)[-1]}: {count}" for source, count in by_file)
        metadata["what_to_do"] = (
            "remove or correct the files with the most quarantined records (the delivery ledger lists them as "
            "'rejected'); the next run publishes the feed, no full refresh needed"
        )
    return False, metadata, AssetCheckSeverity.ERROR if above else AssetCheckSeverity.WARN

