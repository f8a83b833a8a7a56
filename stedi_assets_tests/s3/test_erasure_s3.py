"""Erasure with the landing zone and the lakehouse in a bucket (a local S3 server): every object read
back holds no trace of the person, the landing objects are replaced by one PUT each with every other
line kept, and a late delivery of theirs is dropped. Versioned buckets are not covered (the older
object versions are documented to remain)."""

from __future__ import annotations

import gzip
import io

import polars as pl

from stedi_assets.domain.simulate import simulate_landing, write_landing
from stedi_assets.lakehouse.erasure import erase, traces
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.lakehouse.ledger import read_ledger
from stedi_assets_tests.conftest import materialize_all
from stedi_assets_tests.lakehouse.test_erasure import avro_blocks, person_rows


def objects_naming(bucket, needle: str) -> list[str]:
    found = []
    for key in bucket.keys():
        data = bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read()
        if key.endswith(".parquet"):
            frame = pl.read_parquet(io.BytesIO(data))
            text = " ".join(str(v) for column in frame.columns if frame.schema[column] == pl.String
                            for v in frame[column].drop_nulls().to_list())
            data = text.encode()
        elif key.endswith(".avro"):
            data = avro_blocks(data)
            needle_here = needle[:16]
            if needle_here.encode() in data.lower():
                found.append(key)
            continue
        elif data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        if needle.encode() in data.lower():
            found.append(key)
    return found


def test_erasure_in_a_bucket(s3_bucket, tmp_path):
    local = tmp_path / "landing"
    write_landing(local, simulate_landing(customers=20, seed=5))
    s3_bucket.upload(local, "landing")
    lakehouse = Lakehouse(
        landing_uri=s3_bucket.uri("landing"), lakehouse_uri=s3_bucket.uri("lakehouse"),
        catalog_uri=f"sqlite:///{tmp_path / 'catalog.db'}",
    )
    assert materialize_all(lakehouse).success
    person = lakehouse.read_table(["customer_curated"], in_process=True).head(1).collect().rows(named=True)[0]
    email, device = person["email"].lower(), person["serialNumber"].lower()
    assert objects_naming(s3_bucket, email)
    originals = {key: s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=key)["Body"].read()
                 for key in s3_bucket.keys("landing/")}

    result = erase(lakehouse, [email], "s3-erasure")

    assert result.found == {email: True}
    assert objects_naming(s3_bucket, email) == []
    assert result.devices_erased == 1 and not any(person_rows(lakehouse, email, device).values())
    for key, original in originals.items():
        theirs = [email.encode()] + ([device.encode()] if "step_trainer" in key else [])
        kept = b"".join(
            line for line in original.splitlines(keepends=True) if not any(t in line.lower() for t in theirs)
        )
        assert s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=key)["Body"].read() == kept, key

    late = b"".join(line for data in originals.values() for line in data.splitlines(keepends=True)
                    if email.encode() in line.lower() and b'"user"' in line)
    s3_bucket.put_many({"landing/accelerometer/accelerometer-late.json": late})
    assert materialize_all(lakehouse).success
    assert traces(lakehouse, "accelerometer_landing").rows == 0
    row = read_ledger(lakehouse)[0].filter(pl.col("uri").str.ends_with("accelerometer-late.json")).row(0, named=True)
    assert row["records_erased"] == late.count(b"\n") > 0
