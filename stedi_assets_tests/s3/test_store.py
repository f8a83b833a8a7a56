"""S3Store against a local S3 server: listing, objects, deletion, Polars' options, errors.

Covers pagination past 1,000 keys, batched deletes, prefixes that share a
beginning, the one-line errors for a missing bucket, rejected credentials and
an unreachable endpoint, and how the AWS variables become the S3 resource.
Does not run the pipeline (test_lakehouse.py does).
"""

from __future__ import annotations

import socket
import time

import moto.settings
import polars as pl
import pytest
from dagster import EnvVar
from polars.testing import assert_frame_equal

from stedi_assets.orchestration.resources import build_resources, lakehouse_for
from stedi_assets.settings import read_settings
from stedi_assets.settings import DEFAULT_S3_MAX_ATTEMPTS
from stedi_assets.lakehouse.storage import FileTooLarge, StorageError
from stedi_assets.lakehouse.storage_s3 import S3Store, describe_object_store_error, object_store_errors
from stedi_assets_tests.s3.conftest import SECRET_ACCESS_KEY

pytestmark = pytest.mark.s3


def s3_store() -> S3Store:
    """The store as the pipeline builds it from the environment."""
    return lakehouse_for(read_settings()).store_for("s3://any-bucket")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_objects_round_trip_and_list_recursively(s3_bucket):
    store = s3_store()
    for key in ("landing/customer/a.json", "landing/customer/2024/b.json", "landing/customer-old/c.json"):
        store.write_bytes(s3_bucket.uri(key), key.encode())
    # A folder marker, as the S3 console writes for "Create folder".
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="landing/customer/empty/", Body=b"")

    listed = store.list_files(s3_bucket.uri("landing/customer"))

    # Nested keys are listed; the sibling prefix "customer-old" and the marker are not.
    assert listed == [s3_bucket.uri("landing/customer/2024/b.json"), s3_bucket.uri("landing/customer/a.json")]
    assert store.read_bytes(listed[1]) == b"landing/customer/a.json"
    # With their modification times, for maintenance's safety age.
    listed_with_times = store.list_objects(s3_bucket.uri("landing/customer"))
    assert [uri for uri, _ in listed_with_times] == listed
    assert all(abs(modified - time.time()) < 300 for _, modified in listed_with_times)
    assert store.list_files(s3_bucket.uri("nothing/here")) == []


def test_keys_that_leave_their_prefix_are_refused_unread(s3_bucket):
    store = s3_store()
    inside = "landing/accelerometer/a.json"
    leaving = ["landing/accelerometer/../customer/b.json", "landing/accelerometer/./c.json", "landing/accelerometer//d.json"]
    for key in (inside, *leaving):
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key, Body=b"{}")

    versions = store.versions(s3_bucket.uri("landing/accelerometer"))

    assert not versions[s3_bucket.uri(inside)].refused
    assert {uri for uri, version in versions.items() if version.refused} == {s3_bucket.uri(k) for k in leaving}
    assert store.list_files(s3_bucket.uri("landing/accelerometer")) == [s3_bucket.uri(inside)]


def test_an_object_over_the_bound_is_not_read(s3_bucket):
    store = s3_store()
    uri = s3_bucket.uri("landing/step_trainer/big.json")
    store.write_bytes(uri, b" " * 4096)

    with pytest.raises(FileTooLarge, match="big.json: larger than 1024 bytes"):
        store.read_bytes(uri, max_bytes=1024)
    assert len(store.read_bytes(uri, max_bytes=4096)) == 4096
    assert store.size(uri) == 4096


def test_write_bytes_replaces_an_object_whole(s3_bucket):
    store = s3_store()
    uri = s3_bucket.uri("landing/customer/customer-1.json")
    store.write_bytes(uri, b'{"email": "a"}')
    store.write_bytes(uri, b'{"email": "b"}')

    assert store.read_bytes(uri) == b'{"email": "b"}'
    assert s3_bucket.keys("landing/") == ["landing/customer/customer-1.json"]


@pytest.mark.slow
def test_listing_and_deleting_more_than_one_page(s3_bucket):
    store = s3_store()
    # 1,100 keys: two pages of a listing, two delete_objects batches.
    keys = [f"lakehouse/trusted/t/data/w1/part-{i:05d}.parquet" for i in range(1_100)]
    kept = "lakehouse/trusted/t/metadata/00001.metadata.json"
    s3_bucket.put_many({key: b"x" for key in keys} | {kept: b"{}"})

    assert store.list_files(s3_bucket.uri("lakehouse/trusted/t/data")) == [s3_bucket.uri(k) for k in keys]
    store.delete_files([s3_bucket.uri(k) for k in keys] + [s3_bucket.uri("lakehouse/trusted/t/data/gone.parquet")])

    assert s3_bucket.keys("lakehouse/") == [kept]


def test_polars_reads_and_writes_with_the_store_options(s3_bucket):
    store = s3_store()
    frame = pl.DataFrame({"sensorReadingTime": [1, 2, 3], "distanceFromObject": [10, 20, 30]})
    uri = s3_bucket.uri("lakehouse/curated/t/data/w1/part-00000.parquet")

    frame.lazy().sink_parquet(uri, storage_options=store.storage_options)

    assert_frame_equal(pl.scan_parquet([uri], storage_options=store.storage_options).collect(), frame)
    assert store.list_files(s3_bucket.uri("lakehouse")) == [uri]


def test_store_never_shows_the_secret(s3_bucket):
    store = s3_store()

    assert store.storage_options["aws_secret_access_key"] == SECRET_ACCESS_KEY  # Polars needs it...
    assert SECRET_ACCESS_KEY not in repr(store)  # ...but it is never displayed


def test_aws_variables_become_env_vars_of_the_s3_resource():
    environ = {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
    }

    s3 = build_resources(environ)["lakehouse"].s3

    # EnvVars, not values: the UI and the run's config show the variable's name only.
    assert s3.aws_access_key_id == EnvVar("AWS_ACCESS_KEY_ID")
    assert s3.aws_secret_access_key == EnvVar("AWS_SECRET_ACCESS_KEY")
    assert s3.region_name == EnvVar("AWS_REGION")  # AWS_REGION wins, as in the other AWS SDKs
    assert s3.endpoint_url == EnvVar("AWS_ENDPOINT_URL")
    assert s3.profile_name is None and s3.aws_session_token is None
    assert s3.max_attempts == DEFAULT_S3_MAX_ATTEMPTS
    assert build_resources({"AWS_MAX_ATTEMPTS": "7"})["lakehouse"].s3.max_attempts == EnvVar.int("AWS_MAX_ATTEMPTS")


def test_custom_endpoint_reaches_polars_and_aws_does_not(s3_bucket, monkeypatch):
    local = s3_store().storage_options
    assert local["aws_endpoint_url"] == s3_bucket.client.meta.endpoint_url
    assert local["aws_allow_http"] == "true"

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    on_aws = s3_store()
    # On AWS, Polars builds the regional endpoint itself.
    assert "aws_endpoint_url" not in on_aws.storage_options
    assert on_aws.storage_options["aws_region"] == "eu-central-1"
    assert on_aws.endpoint == "https://s3.eu-central-1.amazonaws.com"


def test_missing_bucket_is_one_line_naming_the_uri(s3_bucket):
    store = s3_store()
    missing = f"{s3_bucket.name}-missing"

    with pytest.raises(StorageError) as listing:
        store.list_files(f"s3://{missing}/landing/customer")
    with pytest.raises(StorageError) as writing:
        store.write_bytes(f"s3://{missing}/landing/customer/a.json", b"{}")

    assert str(listing.value) == f"s3://{missing}/landing/customer: bucket '{missing}' does not exist"
    assert str(writing.value) == f"s3://{missing}/landing/customer/a.json: bucket '{missing}' does not exist"
    assert listing.value.__cause__ is None and listing.value.__suppress_context__


def test_rejected_credentials_are_one_line(s3_bucket, monkeypatch):
    # From now on the server checks every request's access key against its
    # (empty) IAM users, so any key is unknown, as a wrong key is on AWS.
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    store = s3_store()

    with pytest.raises(StorageError) as listing:
        store.list_files(s3_bucket.uri("landing/customer"))
    with pytest.raises(StorageError) as writing:
        with object_store_errors(s3_bucket.uri("t/part-0.parquet")):
            pl.LazyFrame({"x": [1]}).sink_parquet(s3_bucket.uri("t/part-0.parquet"), storage_options=store.storage_options)

    assert str(listing.value) == (
        f"{s3_bucket.uri('landing/customer')}: the AWS access key id is not known to S3 "
        "(check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
    )
    assert str(writing.value).startswith(f"{s3_bucket.uri('t/part-0.parquet')}: the AWS access key id is not known")


def test_unreachable_endpoint_is_one_line(s3_bucket, monkeypatch):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    store = s3_store()

    with pytest.raises(StorageError) as listing:
        store.list_files(s3_bucket.uri("landing/customer"))
    with pytest.raises(StorageError) as scanning:
        with object_store_errors():
            pl.scan_parquet([s3_bucket.uri("t/part-0.parquet")], storage_options=store.storage_options).collect()

    assert str(listing.value) == (
        f"{s3_bucket.uri('landing/customer')}: cannot connect to the S3 endpoint {endpoint} (EndpointConnectionError)"
    )
    assert str(scanning.value).startswith(f"{s3_bucket.uri('t/part-0.parquet')}: cannot connect to {endpoint} (")
    assert "\n" not in str(scanning.value)


def test_other_errors_pass_through_object_store_errors():
    # Only object-store failures are rewritten; a local file error keeps its own message.
    with pytest.raises(FileNotFoundError):
        with object_store_errors():
            pl.scan_parquet("/nonexistent/stedi/part-0.parquet").collect()
    assert describe_object_store_error(ValueError("object-store error")) is None


def test_a_missing_profile_is_one_line(s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")

    with pytest.raises(StorageError) as setup:
        lakehouse_for(read_settings()).store_for(s3_bucket.uri("landing/customer"))

    assert str(setup.value) == (
        f"{s3_bucket.uri('landing/customer')}: cannot set up the S3 client "
        "(The config profile (no-such-profile) could not be found)"
    )


def test_the_library_s3_connection_has_every_setting_a_store_reads():
    """A lakehouse built without Dagster (the stedi command, query by URI) connects with S3Connection;
    a run with dagster-aws's S3Resource. Both carry every field S3Store reads."""
    from typing import get_type_hints

    from dagster_aws.s3 import S3Resource

    from stedi_assets.lakehouse.lakehouse import S3Connection
    from stedi_assets.lakehouse.storage_s3 import S3Settings

    fields = set(get_type_hints(S3Settings))
    assert fields <= set(S3Connection.__dataclass_fields__)
    assert fields <= set(S3Resource.model_fields)
