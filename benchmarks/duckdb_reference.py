"""The lakehouse's six rules in plain DuckDB SQL: a reference for counts and for wall time.

Reads the landing zone (``{landing}/{feed}/*.json``, newline-delimited JSON) and
writes one Parquet file per table to ``{out}/{zone}/{table}.parquet``.

The feed schemas are declared here on purpose rather than imported from the
``stedi_assets`` package: the reference must stay independent of the code it
checks. DuckDB matches top-level JSON keys to the declared columns
case-sensitively (``"Email"`` does not fill ``email``), so the feeds must use the
spellings below, as the real feeds do. The privacy rules for dirty input
(email identity, customers held back for an unreadable record, shared
devices) are left out: the real data has no such records.

Two settings of the lakehouse change the rules, and both are written here:
``same_customer`` (pair readings only when the accelerometer's user owns the
step trainer) and ``consent_scope``: under ``from_consent_date`` a reading is
research data only if taken at or after its owner's research consent
(``shareWithResearchAsOfDate`` of the owner's current record), for a
step-trainer reading at or after the consent of every curated customer whose
record carries the device (the latest of them).

Usage::

    python -m benchmarks.duckdb_reference --landing DIR --out DIR [--same-customer]
        [--consent-scope {any_time,from_consent_date}]
"""

from __future__ import annotations

import argparse
import pathlib
import time

import duckdb

FEED_COLUMNS: dict[str, dict[str, str]] = {
    "customer": {
        "customerName": "VARCHAR",
        "email": "VARCHAR",
        "phone": "VARCHAR",
        "birthDay": "VARCHAR",
        "serialNumber": "VARCHAR",
        "registrationDate": "BIGINT",
        "lastUpdateDate": "BIGINT",
        "shareWithResearchAsOfDate": "BIGINT",
        "shareWithPublicAsOfDate": "BIGINT",
        "shareWithFriendsAsOfDate": "BIGINT",
    },
    "accelerometer": {
        "user": "VARCHAR",
        "timestamp": "BIGINT",
        "x": "DOUBLE",
        "y": "DOUBLE",
        "z": "DOUBLE",
    },
    "step_trainer": {
        "sensorReadingTime": "BIGINT",
        "serialNumber": "VARCHAR",
        "distanceFromObject": "BIGINT",
    },
}

# Zone of each table, in materialization order.
TABLE_ZONES: dict[str, str] = {
    "customer_landing": "landing",
    "accelerometer_landing": "landing",
    "step_trainer_landing": "landing",
    "customer_trusted": "trusted",
    "accelerometer_trusted": "trusted",
    "customer_curated": "curated",
    "step_trainer_trusted": "trusted",
    "machine_learning_curated": "curated",
}

# Pairs a step-trainer reading with every accelerometer reading taken at the
# same instant, whoever owns the device.
_ML_JOIN_ON = "s.sensorReadingTime = a.timestamp"

# Also requires the accelerometer's user to own the step trainer. EXISTS rather
# than a join so that a serial number shared by two customers cannot multiply rows.
_ML_JOIN_ON_SAME_CUSTOMER = (
    _ML_JOIN_ON
    + " AND EXISTS (SELECT 1 FROM customer_curated c"
    " WHERE c.serialNumber = s.serialNumber AND c.email = a.\"user\")"
)


CONSENT_SCOPES = ("any_time", "from_consent_date")

# Under from_consent_date, the condition on a reading's time: at or after the
# consent of every one of its owners (one for an accelerometer reading, whose
# user is one customer; any number for a step trainer's device). ALL over the
# owners rather than their latest date: a null reading time is never at or
# after a consent, and the owners need not be made one row first.
_AT_OR_AFTER_EVERY_CONSENT = (
    "{time} >= ALL (SELECT o.shareWithResearchAsOfDate FROM {owners} o WHERE o.{owner_key} = {key})"
)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _read_feed_sql(landing: pathlib.Path, feed: str) -> str:
    columns = ", ".join(
        f"{_sql_string(name)}: {_sql_string(sql_type)}"
        for name, sql_type in FEED_COLUMNS[feed].items()
    )
    pattern = _sql_string(str(landing / feed / "*.json"))
    return (
        f"SELECT * FROM read_json({pattern}, format = 'newline_delimited', "
        f"columns = {{{columns}}})"
    )


def table_queries(
    landing: pathlib.Path, same_customer: bool = False, consent_scope: str = "any_time"
) -> dict[str, str]:
    """The SELECT statement of each table, keyed by table name, in dependency order."""
    if consent_scope not in CONSENT_SCOPES:
        raise ValueError(f"consent_scope must be one of {CONSENT_SCOPES}, not {consent_scope!r}")
    from_consent_date = consent_scope == "from_consent_date"
    accelerometer_in_scope = _AT_OR_AFTER_EVERY_CONSENT.format(
        time="a.timestamp", owners="customer_trusted", owner_key="email", key='a."user"'
    ) if from_consent_date else "TRUE"
    step_trainer_in_scope = _AT_OR_AFTER_EVERY_CONSENT.format(
        time="s.sensorReadingTime", owners="customer_curated", owner_key="serialNumber", key="s.serialNumber"
    ) if from_consent_date else "TRUE"
    return {
        "customer_landing": _read_feed_sql(landing, "customer"),
        "accelerometer_landing": _read_feed_sql(landing, "accelerometer"),
        "step_trainer_landing": _read_feed_sql(landing, "step_trainer"),
        # One record per email: the latest update wins; on a tie the record
        # without research consent wins (consent must never be inferred from an
        # ambiguous delivery), then the remaining columns make the pick stable.
        "customer_trusted": """
            SELECT * EXCLUDE (delivery_rank) FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY email
                    ORDER BY lastUpdateDate DESC NULLS LAST,
                             shareWithResearchAsOfDate IS NULL DESC,
                             customerName, phone, birthDay, serialNumber,
                             registrationDate, shareWithResearchAsOfDate,
                             shareWithPublicAsOfDate, shareWithFriendsAsOfDate
                ) AS delivery_rank
                FROM customer_landing
            )
            WHERE delivery_rank = 1 AND shareWithResearchAsOfDate IS NOT NULL
        """,
        "accelerometer_trusted": f"""
            SELECT * FROM accelerometer_landing a
            WHERE a."user" IN (SELECT email FROM customer_trusted)
              AND {accelerometer_in_scope}
        """,
        "customer_curated": """
            SELECT * FROM customer_trusted
            WHERE email IN (SELECT "user" FROM accelerometer_trusted)
        """,
        "step_trainer_trusted": f"""
            SELECT * FROM step_trainer_landing s
            WHERE s.serialNumber IN (SELECT serialNumber FROM customer_curated)
              AND {step_trainer_in_scope}
        """,
        "machine_learning_curated": f"""
            SELECT s.sensorReadingTime, s.serialNumber, s.distanceFromObject,
                   a.timestamp, a.x, a.y, a.z
            FROM step_trainer_trusted s
            JOIN accelerometer_trusted a
              ON {_ML_JOIN_ON_SAME_CUSTOMER if same_customer else _ML_JOIN_ON}
        """,
    }


def run_reference(
    landing: str | pathlib.Path,
    out: str | pathlib.Path,
    same_customer: bool = False,
    consent_scope: str = "any_time",
) -> dict[str, int]:
    """Build all eight tables from ``landing`` into ``out``; return each table's row count."""
    landing_path = pathlib.Path(landing)
    out_path = pathlib.Path(out)
    counts: dict[str, int] = {}
    with duckdb.connect() as con:
        for table, query in table_queries(landing_path, same_customer, consent_scope).items():
            con.execute(f"CREATE TABLE {table} AS {query}")
            target = out_path / TABLE_ZONES[table] / f"{table}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            con.execute(f"COPY {table} TO {_sql_string(str(target))} (FORMAT parquet)")
            row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def main(argv: list[str] | None = None) -> None:
    """Command line: build the reference tables, print their counts and the wall time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", required=True, help="landing zone folder")
    parser.add_argument("--out", required=True, help="folder for the Parquet tables")
    parser.add_argument(
        "--same-customer",
        action="store_true",
        help="pair readings only when the accelerometer's user owns the step trainer",
    )
    parser.add_argument(
        "--consent-scope",
        choices=CONSENT_SCOPES,
        default="any_time",
        help="from_consent_date: only readings taken at or after their owner's research consent",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    counts = run_reference(args.landing, args.out, args.same_customer, args.consent_scope)
    elapsed_s = time.perf_counter() - started
    for table, rows in counts.items():
        print(f"{table:<28} {rows:>12,}")
    print(f"{'wall time (s)':<28} {elapsed_s:>12.2f}")


if __name__ == "__main__":
    main()
