"""No personal data in what the pipeline leaves in Dagster's event log.

Runs the whole graph on a small simulated landing zone, one record of which
carries an unknown top-level field named like an email address, and searches
every event of the run (as stored by the instance) for any raw address; the
same with the landing zone and lakehouse in a folder named like an address
(URIs in metadata and in step errors). Also covers the masking helpers.
"""

from __future__ import annotations

import json

import pytest
from dagster import DagsterInstance, MetadataValue, materialize
from dagster._serdes import serialize_value

from stedi_assets.definitions import zone_assets
from stedi_assets.orchestration.masking import mask_emails, mask_metadata, masking_errors
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.domain.simulate import simulate_landing
from stedi_assets_tests.conftest import resources_for

ADDRESS = "ann.example@example.com"


def test_mask_emails_masks_every_address_and_nothing_else():
    assert mask_emails(f"{ADDRESS}: 1, timeStamp: 2") == "an***@example.com: 1, timeStamp: 2"
    assert mask_emails("a@b.co and Bo.X@mail.example.org") == "a***@b.co and Bo***@mail.example.org"
    assert mask_emails("s3://bucket/landing/customer") == "s3://bucket/landing/customer"
    # Masking twice changes nothing: the masked form is not an address.
    assert mask_emails(mask_emails(ADDRESS)) == mask_emails(ADDRESS)


def test_mask_metadata_reaches_keys_text_and_json():
    metadata = mask_metadata({
        ADDRESS: 1,
        "fields": MetadataValue.text(f"{ADDRESS}: 3"),
        "doc": MetadataValue.md(f"*{ADDRESS}*"),
        "json": MetadataValue.json({"names": [ADDRESS], ADDRESS: {"nested": ADDRESS}}),
        "rows": MetadataValue.int(5),
    })
    assert ADDRESS not in repr(metadata)
    assert metadata["an***@example.com"] == 1
    assert metadata["fields"].text == "an***@example.com: 3"
    assert metadata["rows"].value == 5


def test_an_unknown_field_named_like_an_email_never_reaches_the_event_log(tmp_path):
    landing = tmp_path / "landing"
    files = simulate_landing(customers=20, seed=7)
    emails = set()
    for relative, data in files.items():
        (landing / relative).parent.mkdir(parents=True, exist_ok=True)
        (landing / relative).write_bytes(data)
        if relative.startswith("customer/"):
            emails |= {json.loads(line)["email"] for line in data.decode().splitlines() if line.strip()}
    first = json.loads(next(data for relative, data in files.items() if relative.startswith("customer/")).splitlines()[0])
    (landing / "customer" / "extra.json").write_text(json.dumps({**first, ADDRESS: "a field no column declares"}) + "\n")

    instance = DagsterInstance.ephemeral()
    lakehouse = Lakehouse(landing_uri=str(landing), lakehouse_uri=str(tmp_path / "lakehouse"))
    result = materialize(zone_assets, resources=resources_for(lakehouse), instance=instance, raise_on_error=False)
    assert result.success

    event_log = "\n".join(serialize_value(entry) for entry in instance.all_logs(result.run_id))
    # The field is reported, masked, so the search below looks where it would be.
    unknown = next(
        e.materialization.metadata["unknown_fields"].text
        for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "customer_landing"
    )
    assert unknown == "an***@example.com: 1"
    assert ADDRESS not in event_log
    assert len(emails) == 20
    assert sorted(email for email in emails if email in event_log) == []


def test_an_error_holding_an_address_is_raised_again_masked():
    def failing(message):
        yield 1
        raise ValueError(message)

    with pytest.raises(ValueError) as raised:
        list(masking_errors(failing(f"cannot read s3://raw/{ADDRESS}.json")))
    assert str(raised.value) == "cannot read s3://raw/an***@example.com.json"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__

    with pytest.raises(KeyError) as untouched:
        list(masking_errors(failing_with(KeyError("customer"))))
    assert untouched.value.args == ("customer",)


def failing_with(error):
    raise error
    yield  # a generator


def _event_log(instance: DagsterInstance, run_id: str) -> str:
    return "\n".join(serialize_value(entry) for entry in instance.all_logs(run_id))


def test_uris_holding_an_address_are_masked_in_metadata_and_step_errors(tmp_path):
    root = tmp_path / ADDRESS
    landing = root / "landing"
    for relative, data in simulate_landing(customers=20, seed=7).items():
        (landing / relative).parent.mkdir(parents=True, exist_ok=True)
        (landing / relative).write_bytes(data)
    instance = DagsterInstance.ephemeral()

    published = materialize(
        zone_assets, instance=instance, raise_on_error=False,
        resources=resources_for(Lakehouse(landing_uri=str(landing), lakehouse_uri=str(root / "lakehouse"))),
    )
    assert published.success
    uris = [e.materialization.metadata["uri"].text for e in published.get_asset_materialization_events()]
    assert uris and all("/an***@example.com/lakehouse/" in uri for uri in uris)
    assert ADDRESS not in _event_log(instance, published.run_id)

    # A landing zone with no files: every landing step fails, naming the (masked) URI.
    failed = materialize(
        zone_assets, instance=instance, raise_on_error=False,
        resources=resources_for(Lakehouse(landing_uri=str(root / "empty"), lakehouse_uri=str(root / "lakehouse"))),
    )
    assert not failed.success
    errors = [e.event_specific_data.error for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(errors) == 3
    for error in errors:
        while error.cause is not None:
            error = error.cause
        assert "no landing files for feed" in error.message and "/an***@example.com/empty/" in error.message
    assert ADDRESS not in _event_log(instance, failed.run_id)
