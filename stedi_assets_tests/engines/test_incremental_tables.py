"""Derived tables updated incrementally equal a full rebuild, after any sequence of deliveries, on both engines.

Hypothesis draws the rule settings and a sequence of deliveries to the three
feeds: new readings and step-trainer records (of customers who consent, who do
not, of nobody), new customers, withdrawals and renewed consents (newer
records), a customer record that cannot be read, files delivered again and
files removed. After each delivery one lakehouse is updated by an ordinary run
(each derived table planned by ``lakehouse.incremental``: unchanged, rows
appended, or recomputed whole), and a new lakehouse is built from the landing
zone as it then is. Every table must hold the same rows.

The incremental path must really be taken: after a delivery of new readings
alone, accelerometer_trusted and machine_learning_curated gain rows by an
append (never a rewrite), and the customer tables commit nothing new.

The checks are held to the same standard: a check judged row by row judges
only the rows an update adds (``checks.Check.row_by_row``), and every check's
outcome (passed, severity, every count it reports) after each delivery equals
its outcome on the full rebuild, where it judges every row. After new
readings, the appended tables' row-by-row checks must really have judged the
added rows alone.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from stedi_assets.domain.schemas import TABLES
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.orchestration.checks import HISTORY_CHECKS, JUDGED_ADDED
from stedi_assets_tests.conftest import materialize_all, stored_table

T0 = 1_655_564_444_000
PEOPLE = ("ann@x.com", "bob@x.com", "cy@x.com", "dee@x.com")
SERIALS = {"ann@x.com": "s-ann", "bob@x.com": "s-bob", "cy@x.com": "s-cy", "dee@x.com": "s-ann"}
"""dee shares ann's step trainer."""

# Without shrinking: each example runs whole pipelines, and a failing one is printed as drawn.
settings.register_profile(
    "derived", max_examples=8, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "derived-spark", max_examples=2, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def customer(email: str, consent: int | None, updated: int) -> str:
    return json.dumps({
        "customerName": email.split("@")[0], "email": email, "phone": "8015551212", "birthDay": "1990-01-01",
        "serialNumber": SERIALS[email], "registrationDate": T0, "lastUpdateDate": T0 + updated,
        "shareWithResearchAsOfDate": consent, "shareWithPublicAsOfDate": None, "shareWithFriendsAsOfDate": None,
    })


times = st.integers(0, 5)
accelerometer = st.lists(
    st.builds(
        lambda user, t, x: json.dumps({"user": user, "timestamp": T0 + t, "x": x, "y": 0.0, "z": 1.0}),
        st.sampled_from((*PEOPLE, "nobody@x.com")), times, st.sampled_from([0.0, 1.0]),
    ),
    min_size=1, max_size=5,
)
step_trainer = st.lists(
    st.builds(
        lambda serial, t, d: json.dumps({"sensorReadingTime": T0 + t, "serialNumber": serial, "distanceFromObject": d}),
        st.sampled_from(("s-ann", "s-bob", "s-cy", "s-nobody")), times, st.integers(1, 3),
    ),
    min_size=1, max_size=5,
)
customers = st.lists(
    st.one_of(
        # Consent from T0 (every reading) or from T0 + 3 (later readings only), or none: a withdrawal
        # when the record is newer than one that consented.
        st.builds(customer, st.sampled_from(PEOPLE), st.sampled_from([T0, T0 + 3, None]), st.integers(1, 50)),
        # Cut short: cy is held back (a record that may be newer than the valid one cannot be read).
        st.just('{"email": "cy@x.com", "lastUpdateDate": '),
    ),
    min_size=1, max_size=2,
)
delivery = st.one_of(
    st.tuples(st.just("accelerometer"), accelerometer),
    st.tuples(st.just("accelerometer"), accelerometer),
    st.tuples(st.just("step_trainer"), step_trainer),
    st.tuples(st.just("customer"), customers),
    st.tuples(st.just("deliver again"), st.sampled_from(("accelerometer", "step_trainer", "customer"))),
    st.tuples(st.just("remove"), st.sampled_from(("accelerometer", "step_trainer", "customer"))),
)
rule_settings = st.fixed_dictionaries({
    "consent_scope": st.sampled_from(["any_time", "from_consent_date"]),
    "ml_join": st.sampled_from(["time", "same_customer"]),
})


def first_landing(landing: Path) -> None:
    files = {
        "customer": [customer("ann@x.com", T0, 0), customer("bob@x.com", None, 0), customer("dee@x.com", T0 + 3, 0)],
        "accelerometer": [json.dumps({"user": u, "timestamp": T0 + t, "x": 1.0, "y": 0.0, "z": 1.0})
                          for u in PEOPLE[:3] for t in range(4)],
        "step_trainer": [json.dumps({"sensorReadingTime": T0 + t, "serialNumber": s, "distanceFromObject": 1})
                         for s in ("s-ann", "s-bob") for t in range(4)],
    }
    for feed, lines in files.items():
        (landing / feed).mkdir(parents=True)
        (landing / feed / "0.json").write_text("\n".join(lines) + "\n")


def deliver(landing: Path, number: int, step: tuple) -> None:
    kind, what = step
    if kind in ("accelerometer", "step_trainer", "customer"):
        (landing / kind / f"{number}.json").write_text("\n".join(what) + "\n")
        return
    files = sorted((landing / what).iterdir())
    if kind == "deliver again":
        data = files[-1].read_bytes()
        files[-1].unlink()
        time.sleep(0.002)  # another modification time, whatever the file system's resolution
        files[-1].write_bytes(data)
    elif len(files) > 1:
        files[-1].unlink()


def updates(result) -> dict[str, str]:
    return {
        e.asset_key.path[-1]: e.materialization.metadata["update"].value
        for e in result.get_asset_materialization_events() if "update" in e.materialization.metadata
    }


HISTORY = {check.name for checks in HISTORY_CHECKS.values() for check in checks}


def check_verdicts(result) -> dict[tuple[str, str], tuple]:
    """Each check's verdict, more than conftest's ``check_outcomes`` (passed alone): passed, severity and the
    counts it reports (history checks aside: the two lakehouses' histories differ by design)."""
    return {
        (e.asset_key.path[-1], e.check_name): (
            e.passed, e.severity,
            {k: v.value for k, v in e.metadata.items() if isinstance(v.value, int | float) and not isinstance(v.value, bool)},
        )
        for e in result.get_asset_check_evaluations() if e.check_name not in HISTORY
    }


def judged_added(result) -> set[tuple[str, str]]:
    """The checks that judged only the rows their table's update added."""
    return {
        (e.asset_key.path[-1], e.check_name) for e in result.get_asset_check_evaluations()
        if "judged" in e.metadata and e.metadata["judged"].value == JUDGED_ADDED
    }


def snapshots(root: Path) -> dict[str, int]:
    from stedi_assets_tests.conftest import independent_catalog

    catalog = independent_catalog(root)
    return {t: catalog.load_table(f"stedi.{t}").metadata.current_snapshot_id for t in TABLES}


def assert_incremental_equals_rebuild(engine: str, rules: dict, steps: list) -> None:
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        landing = base / "landing"
        first_landing(landing)

        def lakehouse(name: str) -> Lakehouse:
            return Lakehouse(
                landing_uri=str(landing), lakehouse_uri=str(base / name), engine=engine, quarantine_max_share=1.0,
                **rules,
            )

        incremental = lakehouse("incremental")
        assert materialize_all(incremental).success
        for number, step in enumerate(steps, start=1):
            before = snapshots(base / "incremental")
            readings = stored_table(base / "incremental", "accelerometer_trusted").height
            deliver(landing, number, step)
            updated = materialize_all(incremental)
            rebuilt = materialize_all(lakehouse(f"rebuild-{number}"))
            assert updated.success == rebuilt.success, (number, step)
            assert check_verdicts(updated) == check_verdicts(rebuilt), (number, step, updates(updated))
            if not rebuilt.success:  # a blocking check holds a table back in both
                continue
            for table in TABLES:
                mine, theirs = stored_table(base / "incremental", table), stored_table(base / f"rebuild-{number}", table)
                assert mine.equals(theirs), (table, number, step, updates(updated), mine, theirs)
            if step[0] == "accelerometer":
                # New readings alone: rows appended where they add rows, nothing recomputed whole.
                kinds = updates(updated)
                for table in ("accelerometer_trusted", "customer_curated"):
                    assert kinds[table] in ("append", "unchanged"), (table, kinds)
                # A customer's first reading may bring their device into step_trainer_trusted (recomputed
                # whole); otherwise machine_learning_curated only gains the new readings' pairs.
                if kinds["step_trainer_trusted"] != "replace":
                    assert kinds["machine_learning_curated"] in ("append", "unchanged"), kinds
                if stored_table(base / "incremental", "accelerometer_trusted").height > readings:
                    assert kinds["accelerometer_trusted"] == "append", kinds
                    assert ("accelerometer_trusted", "consenting_readings_only") in judged_added(updated)
                assert snapshots(base / "incremental")["customer_trusted"] == before["customer_trusted"]


@settings(settings.get_profile("derived"))
@given(rules=rule_settings, steps=st.lists(delivery, min_size=1, max_size=3))
def test_polars_derived_tables_equal_a_full_rebuild(rules, steps):
    assert_incremental_equals_rebuild("polars", rules, steps)


@pytest.mark.spark
@settings(settings.get_profile("derived-spark"))
@given(rules=rule_settings, steps=st.lists(delivery, min_size=2, max_size=2))
def test_spark_derived_tables_equal_a_full_rebuild(spark, rules, steps):
    assert_incremental_equals_rebuild("spark", rules, steps)
