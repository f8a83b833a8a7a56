"""Erasure on request: the person leaves every byte of the lakehouse and stays out.

On the simulated landing zone, published twice (so that history holds the
person), with a quarantined record naming them in a file of its own: one
consenting customer whose device is in machine_learning_curated is erased,
by the email as an operator might type it. Every file under the lakehouse and
the landing zone is then read (Parquet decoded, Avro manifests decoded,
metadata JSON, the SQLite catalog and the landing files as bytes) and must not
name them nor hold their device; the landing files keep every other line byte
for byte. A full refresh and a late delivery do not bring them back (the
ledger counts what it dropped), the register holds hashes only, and the audit
check fails once a row of theirs is put back behind the lakehouse's back.
The ``stedi erase`` command is tested on its own lakehouse; one test erases a
person from the real data set. The Spark engine is covered in
``engines/test_spark_erasure.py``, a bucket in ``s3/test_erasure_s3.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from dagster import Definitions, materialize
from hypothesis import given, settings
from hypothesis import strategies as st

from stedi_assets.cli import main
from stedi_assets.definitions import stedi_audit_job, zone_assets
from stedi_assets.domain.rules import device_of, identity_of
from stedi_assets.domain.simulate import simulate_landing, write_landing
from stedi_assets.lakehouse.erasure import (
    ErasureError,
    Register,
    TextMatcher,
    erase,
    identity_digest,
    names_erased,
    parse_emails,
    read_register,
    traces,
    without_lines,
)
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.lakehouse.ledger import read_ledger
from stedi_assets.lakehouse.query import query
from stedi_assets.orchestration.audit import AUDIT_CHECKS
from stedi_assets_tests.conftest import independent_catalog, materialize_all, resources_for

FEEDS = ("customer", "accelerometer", "step_trainer")
FULL_REFRESH = {"ops": {f"{feed}_landing": {"config": {"full_refresh": True}} for feed in FEEDS}}


# -- reading every byte --------------------------------------------------------------------


def _varint(data: bytes, position: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), position


def avro_blocks(data: bytes) -> bytes:
    """The decompressed blocks of an Avro container file (strings in them are plain UTF-8)."""
    from pyiceberg.avro.codecs import KNOWN_CODECS

    assert data[:4] == b"Obj\x01"
    position, meta = 4, {}
    while True:
        count, position = _varint(data, position)
        if count == 0:
            break
        if count < 0:
            _, position = _varint(data, position)
            count = -count
        for _ in range(count):
            size, position = _varint(data, position)
            key = data[position:position + size].decode()
            position += size
            size, position = _varint(data, position)
            meta[key] = data[position:position + size]
            position += size
    position += 16  # sync marker
    codec = KNOWN_CODECS.get(meta.get("avro.codec", b"null").decode())
    blocks = []
    while position < len(data):
        _, position = _varint(data, position)
        size, position = _varint(data, position)
        block = data[position:position + size]
        blocks.append(codec.decompress(block) if codec else block)
        position += size + 16
    return b"".join(blocks) + b"".join(meta.values())


def traces_in_files(folders: list[Path], email: str, device: str | None) -> list[str]:
    """Every file under ``folders`` that names ``email`` (any case) or, in a column or text, ``device``."""
    found = []
    needles = [email.lower()] + ([device.lower()] if device else [])
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if path.suffix == ".parquet":
                frame = pl.read_parquet(path)
                texts = [
                    str(value).lower() for column in frame.columns if frame.schema[column] == pl.String
                    for value in frame[column].drop_nulls().to_list()
                ]
                if any(needle in text for text in texts for needle in needles):
                    found.append(str(path))
                continue
            data = path.read_bytes()
            if path.suffix == ".avro":
                data = avro_blocks(data)
                # A manifest keeps a string column's bounds cut to 16 characters.
                lowered = data.lower()
                if any(needle[:16].encode() in lowered for needle in needles):
                    found.append(str(path))
                continue
            elif data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            lowered = data.lower()
            if any(needle.encode() in lowered for needle in needles):
                found.append(str(path))
    return found


# -- the erased lakehouse -------------------------------------------------------------------


@dataclass
class Erased:
    lakehouse: Lakehouse
    root: Path
    landing: Path
    email: str
    device: str
    before: dict[Path, bytes]
    traces_before: list[str]
    rows_before: dict[str, int]
    rows_after: dict[str, int]
    person_before: dict[str, int]
    result: object


def _rows(lakehouse: Lakehouse) -> dict[str, int]:
    counts = query(
        "SELECT (SELECT COUNT(*) FROM customer_trusted) AS customer_trusted, "
        "(SELECT COUNT(*) FROM accelerometer_trusted) AS accelerometer_trusted, "
        "(SELECT COUNT(*) FROM step_trainer_trusted) AS step_trainer_trusted, "
        "(SELECT COUNT(*) FROM machine_learning_curated) AS machine_learning_curated, "
        "(SELECT COUNT(*) FROM customer_landing) AS customer_landing",
        lakehouse,
    )
    return counts.to_dicts()[0]


def person_rows(lakehouse: Lakehouse, email: str, device: str) -> dict[str, int]:
    """Rows of the person in the current tables, by an independent SQL reader."""
    email, device = email.lower(), device.lower()
    sql = {
        "customer_landing": f"SELECT COUNT(*) FROM customer_landing WHERE lower(trim(email)) = '{email}'",
        "customer_trusted": f"SELECT COUNT(*) FROM customer_trusted WHERE lower(trim(email)) = '{email}'",
        "accelerometer_landing": f"SELECT COUNT(*) FROM accelerometer_landing WHERE lower(trim(user)) = '{email}'",
        "accelerometer_trusted": f"SELECT COUNT(*) FROM accelerometer_trusted WHERE lower(trim(user)) = '{email}'",
        "step_trainer_landing": f"SELECT COUNT(*) FROM step_trainer_landing WHERE lower(trim(serialNumber)) = '{device}'",
        "machine_learning_curated": f"SELECT COUNT(*) FROM machine_learning_curated WHERE lower(serialNumber) = '{device}'",
        "customer_quarantine": f"SELECT COUNT(*) FROM customer_quarantine WHERE lower(raw_text) LIKE '%{email}%'",
    }
    return {table: int(query(statement, lakehouse).item()) for table, statement in sql.items()}


@pytest.fixture(scope="module")
def erased(tmp_path_factory) -> Erased:
    tmp_path = tmp_path_factory.mktemp("erasure")
    landing, root = tmp_path / "landing", tmp_path / "lakehouse"
    write_landing(landing, simulate_landing())
    lakehouse = Lakehouse(landing_uri=str(landing), lakehouse_uri=str(root))
    assert materialize_all(lakehouse).success
    ml_devices = lakehouse.read_table(["machine_learning_curated"]).select("serialNumber").unique()
    customers = lakehouse.read_table(["customer_landing"]).collect().to_native()
    owners = customers.group_by("serialNumber").agg(pl.col("email").n_unique().alias("owners"))
    person = (
        lakehouse.read_table(["customer_curated"]).join(ml_devices, on="serialNumber", how="semi").collect().to_native()
        .join(owners.filter(pl.col("owners") == 1), on="serialNumber", how="semi").row(0, named=True)
    )
    email, device = person["email"], person["serialNumber"]
    other = customers.filter(pl.col("email") != email).row(0, named=True)
    # A file of its own: another customer's record, and a record of the person cut short (quarantined).
    (landing / "customer" / "customer-extra.json").write_bytes(
        json.dumps(other).encode() + b"\r\n" + f'{{"email": "{email.upper()}", "lastUpdateDate": 16'.encode() + b"\n"
        + json.dumps({**other, "phone": "555-0100"}).encode()
    )
    assert materialize_all(lakehouse).success
    before = {p: p.read_bytes() for p in sorted(landing.rglob("*")) if p.is_file()}
    traces_before = traces_in_files([root, landing], email, device)
    rows_before, person_before = _rows(lakehouse), person_rows(lakehouse, email, device)
    result = erase(lakehouse, [f"  {email.upper()} "], "erasure-test-run")
    return Erased(
        lakehouse, root, landing, email, device, before, traces_before, rows_before, _rows(lakehouse), person_before,
        result,
    )


def test_not_a_byte_of_the_person_is_left(erased):
    # The scan finds them before: it can fail.
    assert any(path.endswith(".json") for path in erased.traces_before)
    assert any(path.endswith(".parquet") for path in erased.traces_before)
    assert any(path.startswith(str(erased.landing)) for path in erased.traces_before)
    assert traces_in_files([erased.root, erased.landing], erased.email, erased.device) == []
    assert not any(person_rows(erased.lakehouse, erased.email, erased.device).values())
    # They were there (their cut-short record holds them back from customer_trusted since the second run)...
    held = erased.person_before
    assert all(held[t] for t in ("customer_landing", "accelerometer_landing", "step_trainer_landing", "customer_quarantine"))
    # ... and everyone else still is.
    for table in ("customer_landing", "machine_learning_curated"):
        assert erased.rows_after[table] == erased.rows_before[table] - held[table], table
    assert erased.rows_after["customer_trusted"] == erased.rows_before["customer_trusted"]
    assert erased.result.found == {erased.email.lower(): True}
    assert erased.result.devices_erased == 1


def test_every_earlier_snapshot_that_held_them_is_gone(erased):
    catalog = independent_catalog(erased.root)
    for table in ("customer_landing", "customer_trusted", "accelerometer_trusted", "machine_learning_curated",
                  "customer_quarantine"):
        iceberg_table = catalog.load_table(f"stedi.{table}")
        for snapshot in iceberg_table.snapshots():
            frame = pl.from_arrow(iceberg_table.scan(snapshot_id=snapshot.snapshot_id).to_arrow())
            text = " ".join(str(v).lower() for row in frame.rows() for v in row)
            assert erased.email.lower() not in text, (table, snapshot.snapshot_id)


def test_the_landing_files_keep_every_other_line_byte_for_byte(erased):
    changed = 0
    for path, original in erased.before.items():
        lines = original.splitlines(keepends=True)
        names = lambda line: erased.email.lower().encode() in line.lower() or (  # noqa: E731
            "step_trainer" in path.name and erased.device.lower().encode() in line.lower()
        )
        expected = b"".join(line for line in lines if not names(line))
        if expected == original:
            assert path.read_bytes() == original, path
            continue
        changed += 1
        if expected.strip():
            assert path.read_bytes() == expected, path
        else:
            assert not path.exists(), path
    # The person's customer records, readings, step-trainer readings and the quarantined line.
    assert changed >= 4
    assert b"\r\n" in (erased.landing / "customer" / "customer-extra.json").read_bytes()


def test_the_register_holds_hashes_only(erased):
    register = query("SELECT * FROM erasure_register", erased.lakehouse)
    text = " ".join(str(v).lower() for row in register.rows() for v in row)
    assert erased.email.lower() not in text and erased.device.lower() not in text
    salt = str(independent_catalog(erased.root).load_table("stedi.erasure_register").metadata.table_uuid)
    by_kind = {row["identity_kind"]: row for row in register.to_dicts()}
    assert by_kind["email"]["identity_sha256"] == hashlib.sha256(
        f"{salt}\x00email\x00{erased.email.lower()}".encode()
    ).hexdigest()
    assert by_kind["device"]["identity_sha256"] == identity_digest(salt, "device", device_of(erased.device))
    for row in by_kind.values():
        assert row["run_id"] == "erasure-test-run" and row["erased_at"] >= row["requested_at"] and row["found"] == 1
        # Held back from customer_trusted by their cut-short record: only its history held them.
        assert "customer_trusted: 0 row(s) removed, 0 file(s) rewritten" in row["tables_touched"]
        assert "accelerometer_landing: " in row["tables_touched"]
        assert row["rows_removed"] > 0 and row["files_rewritten"] > 0 and row["snapshots_expired"] > 0


def test_a_full_refresh_does_not_bring_them_back(erased):
    assert materialize_all(erased.lakehouse).success
    assert _rows(erased.lakehouse) == erased.rows_after
    assert materialize(zone_assets, resources=resources_for(erased.lakehouse), run_config=FULL_REFRESH).success
    assert _rows(erased.lakehouse) == erased.rows_after
    assert not any(person_rows(erased.lakehouse, erased.email, erased.device).values())


def test_a_late_delivery_of_theirs_is_dropped_and_counted(erased):
    late = {
        feed: [line for path, data in erased.before.items() if path.parent.name == feed
               for line in data.splitlines(keepends=True)
               if erased.email.lower().encode() in line.lower() or erased.device.lower().encode() in line.lower()]
        for feed in FEEDS
    }
    assert all(late.values())
    for feed, lines in late.items():
        (erased.landing / feed / f"{feed}-late.json").write_bytes(b"".join(lines))
    assert materialize_all(erased.lakehouse).success
    assert not any(person_rows(erased.lakehouse, erased.email, erased.device).values())
    assert _rows(erased.lakehouse) == erased.rows_after
    ledger = read_ledger(erased.lakehouse)[0].filter(pl.col("uri").str.ends_with("-late.json"))
    assert ledger.height == 3
    for row in ledger.iter_rows(named=True):
        assert row["records_erased"] == len(late[row["feed"]]), row
        assert row["records_read"] == row["records_kept"] == row["records_quarantined"] == 0
    assert traces_in_files([erased.root], erased.email, erased.device) == []


def test_the_audit_fails_when_a_row_of_theirs_is_put_back(erased):
    definitions = Definitions(
        assets=zone_assets, asset_checks=AUDIT_CHECKS, jobs=[stedi_audit_job], resources=resources_for(erased.lakehouse)
    )

    def outcomes() -> dict[str, tuple[bool, dict]]:
        result = definitions.resolve_job_def("stedi_audit_job").execute_in_process(raise_on_error=False)
        return {
            e.asset_key.path[-1]: (e.passed, {k: v.value for k, v in e.metadata.items()})
            for e in result.get_asset_check_evaluations() if e.check_name == "audit_erased_identities_absent"
        }

    assert all(passed for passed, _ in outcomes().values())
    # Appended by another writer, with the address spelled another way.
    table = independent_catalog(erased.root).load_table("stedi.accelerometer_trusted")
    row = table.scan(limit=1).to_arrow().to_pylist()[0]
    table.append(pa.Table.from_pylist([{**row, "user": f" {erased.email.upper()}"}], schema=table.scan().to_arrow().schema))
    found = outcomes()
    passed, metadata = found["accelerometer_trusted"]
    assert not passed and metadata["rows_of_erased_identities"] == 1 and metadata["files_holding_them"] == 1
    assert erased.email.lower() not in json.dumps(metadata).lower()
    assert all(passed for table, (passed, _) in found.items() if table != "accelerometer_trusted")


# -- rules of their own ----------------------------------------------------------------------


def test_a_request_is_normalized_as_the_rules_normalize_emails():
    assert parse_emails([" Anna@X.com ", "ａｎｎａ@x.com", "anna@x.com\u200b"]) == ["anna@x.com"]
    for bad in ("anna", "anna@", "@x.com", "", "a b@x.com"):
        with pytest.raises(ErasureError, match="not an email address"):
            parse_emails([bad])


def test_a_text_names_a_person_however_it_spells_them():
    register = Register("salt").with_identities([identity_of("anna@x.com")], [device_of("SN-1")])
    assert names_erased('{"email": "ANNA@X.COM"}', register, devices=False)
    assert names_erased('{"user": "\\u0061nna@x.com", "x": 1}', register, devices=False)  # an escape in JSON
    assert names_erased("{'email': ａｎｎａ@x.com, broken", register, devices=False)  # not JSON at all
    assert names_erased('{"serialNumber": " sn-1 "}', register, devices=True)
    assert not names_erased('{"serialNumber": "sn-1"}', register, devices=False)
    assert not names_erased('{"email": "hanna@x.com"}', register, devices=True)


def test_lines_are_removed_and_the_rest_kept_byte_for_byte():
    register = Register("s").with_identities(["anna@x.com"], [])
    names = lambda text: names_erased(text, register, False)  # noqa: E731
    data = b'{"email":"bo@x.com"}\r\n{"email":"Anna@x.com"}\n\n{"email": "cy@x.com"}'
    assert without_lines(data, names) == (b'{"email":"bo@x.com"}\r\n\n{"email": "cy@x.com"}', 1)
    assert without_lines(b'{"email":"bo@x.com"}\n', names) == (b'{"email":"bo@x.com"}\n', 0)
    compressed, removed = without_lines(gzip.compress(data), names)
    assert removed == 1 and gzip.decompress(compressed) == b'{"email":"bo@x.com"}\r\n\n{"email": "cy@x.com"}'
    # The quick look at plain ASCII lines finds the same lines, escaped or full-width ones too.
    spelled = b'{"email":"ANNA@x.com"}\n{"email":"\\u0061nna@x.com"}\n{"email":"\xef\xbd\x81nna@x.com"}\n{"email":"bo@x.com"}\n'
    assert without_lines(spelled, names, (b"anna@x.com",)) == without_lines(spelled, names) == (b'{"email":"bo@x.com"}\n', 3)
    array, removed = without_lines(b'[{"email": "anna@x.com"}, {"email": "bo@x.com"}]', names)
    assert removed == 1 and json.loads(array) == [{"email": "bo@x.com"}]


_SPELLINGS = [
    "anna@x.com", "ANNA@X.COM", " Anna@x.com ", "anna@x.co", "anna@x.com.au", "bo@x.com", "\\u0061nna@x.com",
    "\uff41nna@x.com", "anna\u200b@x.com", "\u00a0anna@x.com", "SN-1", " sn-1 ", "SN-10", "sn\u20131", "\\u0053N-1",
]


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.tuples(
            st.sampled_from(["email", "user", "serialNumber", "note", "customerName"]),
            st.sampled_from(_SPELLINGS),
            st.sampled_from(['{{"{k}":"{v}"}}', '{{"{k}": "{v}", "x": 1}}', "{k} {v}", '{{"{k}":"{v}"', ""]),
        ),
        max_size=12,
    ),
    ending=st.sampled_from(["\n", "\r\n", ""]),
    devices=st.booleans(),
)
def test_the_quick_look_at_plain_lines_keeps_what_the_careful_look_keeps(lines, ending, devices):
    """The fast path of ``without_lines`` (a plain ASCII line without the identity in lower case is kept
    unparsed) removes exactly the lines the careful path removes, whatever the spellings."""
    register = Register("s").with_identities([identity_of("anna@x.com")], [device_of("SN-1")] if devices else [])
    data = ending.join(template.format(k=key, v=value) for key, value, template in lines).encode()
    plain = (b"anna@x.com", b"sn-1") if devices else (b"anna@x.com",)
    looked_at: list[str] = []
    careful = TextMatcher(register, devices)

    def names(text: str) -> bool:
        looked_at.append(text)
        return careful(text)

    quick = without_lines(data, names, plain)
    assert quick == without_lines(data, TextMatcher(register, devices))
    # The quick path was taken: no plain ASCII line without an escape or the identity reached the matcher.
    if not data.lstrip().startswith(b"["):
        skippable = [
            line for line in data.splitlines(keepends=True)
            if line.isascii() and b"\\" not in line and not any(p in line.lower() for p in plain)
        ]
        assert not [text for text in looked_at if text.encode() in skippable]
        assert len(looked_at) == len(data.splitlines(keepends=True)) - len(skippable)


# -- the command -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_lakehouse(tmp_path_factory) -> Lakehouse:
    tmp_path = tmp_path_factory.mktemp("erase-command")
    write_landing(tmp_path / "landing", simulate_landing(customers=20, seed=7))
    lakehouse = Lakehouse(landing_uri=str(tmp_path / "landing"), lakehouse_uri=str(tmp_path / "lakehouse"))
    assert materialize_all(lakehouse).success
    return lakehouse


def test_stedi_erase_prints_a_line_per_table_and_reports_who_was_not_found(small_lakehouse, capsys):
    email = small_lakehouse.read_table(["customer_curated"]).head(1).collect()["email"].item()
    options = ["--landing", small_lakehouse.landing_uri, "--lakehouse", small_lakehouse.lakehouse_uri]
    assert main(["erase", email.upper(), "nobody@example.com", *options]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("customer_trusted: 1 row(s) removed, 1 file(s) rewritten") for line in lines), out
    assert any(line.startswith("customer landing files: ") for line in lines), out
    assert "not found: no***@example.com" in out and email.lower() not in out.lower()
    assert lines[-1].startswith("OK: 2 person(s)")
    # Both registered: the one not found is dropped from a later delivery too.
    register = read_register(small_lakehouse)
    assert register.holds("email", "Nobody@Example.com") and register.holds("email", email)
    assert main(["query", "SELECT COUNT(*) AS n FROM erasure_register WHERE identity_kind = 'email'",
                 "--lakehouse", small_lakehouse.lakehouse_uri, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2"
    assert traces(small_lakehouse, "customer_trusted").rows == 0


@pytest.mark.parametrize("argument", ["anna", "anna@", "two@@x.com"])
def test_stedi_erase_refuses_what_is_not_an_email_in_one_line(small_lakehouse, capsys, argument):
    options = ["--landing", small_lakehouse.landing_uri, "--lakehouse", small_lakehouse.lakehouse_uri]
    assert main(["erase", "bo@x.com", argument, *options]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0 and "not an email address" in captured.err
    # Nothing was registered.
    assert not read_register(small_lakehouse).holds("email", "bo@x.com")


# -- the real data set -------------------------------------------------------------------------


def test_erasing_a_customer_of_the_real_data_set(stedi_landing, tmp_path):
    landing = tmp_path / "landing"
    shutil.copytree(stedi_landing, landing)
    lakehouse = Lakehouse(landing_uri=str(landing), lakehouse_uri=str(tmp_path / "lakehouse"))
    assert materialize_all(lakehouse).success
    person = (
        lakehouse.read_table(["customer_curated"]).sort("email").head(1).collect().to_native().row(0, named=True)
    )
    before = _rows(lakehouse)
    result = erase(lakehouse, [person["email"]], "real-data-erasure")
    assert result.found == {identity_of(person["email"]): True}
    after = _rows(lakehouse)
    assert after["customer_trusted"] == before["customer_trusted"] - 1
    rows = person_rows(lakehouse, person["email"], person["serialNumber"])
    assert not any(n for table, n in rows.items() if not table.startswith(("step_trainer", "machine_learning")))
    if result.devices_erased:
        assert not any(rows.values())
    assert traces_in_files([tmp_path / "lakehouse", landing], person["email"], None) == []
    # A full rebuild from the rewritten landing zone gives the erased tables.
    assert materialize(zone_assets, resources=resources_for(lakehouse), run_config=FULL_REFRESH).success
    assert _rows(lakehouse) == after


def test_erase_job_takes_the_emails_from_its_config_and_logs_them_masked(small_lakehouse):
    from stedi_assets.orchestration.erasure_job import erase_job

    email = small_lakehouse.read_table(["customer_curated"]).sort("email").tail(1).collect()["email"].item()
    job = Definitions(jobs=[erase_job], resources=resources_for(small_lakehouse)).resolve_job_def("erase_job")
    result = job.execute_in_process(run_config={"ops": {"erase_people": {"config": {"emails": [f" {email.upper()}"]}}}})
    assert result.success
    output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert metadata["people"] == 1 and metadata["not_found"] == "none" and metadata["rows_removed"] > 0
    assert "customer_trusted: 1 row(s) removed" in metadata["report"]
    assert read_register(small_lakehouse).holds("email", email)
    assert traces(small_lakehouse, "customer_trusted").rows == 0
    # Nothing the run logged names them.
    assert all(email.lower() not in str(event).lower() for event in result.all_events)

    refused = job.execute_in_process(
        run_config={"ops": {"erase_people": {"config": {"emails": ["not-an-email"]}}}}, raise_on_error=False
    )
    assert not refused.success
