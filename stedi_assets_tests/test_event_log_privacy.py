"""No personal data in what the pipeline leaves in Dagster's event log.

Runs the whole graph on a small simulated landing zone, one record of which
carries an unknown top-level field named like an email address, and searches
every event of the run (as stored by the instance) for any raw address; the
same with the landing zone and lakehouse in a folder named like an address
(URIs in metadata and in step errors). Also covers the masking helpers, with a
property over generated addresses of every form SMTP allows (Unicode local
parts and domains, quoted local parts, address literals, dotless domains)
in running text, in metadata, and through a small asset's event log.
"""

from __future__ import annotations

import ipaddress
import json
import re

import pytest
from dagster import DagsterInstance, MetadataValue, Output, asset, materialize, materialize_to_memory
from dagster._serdes import serialize_value
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stedi_assets.definitions import zone_assets
from stedi_assets.orchestration.masking import mask_email, mask_emails, mask_metadata, masked, masking_errors
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.domain.simulate import simulate_landing
from stedi_assets_tests.conftest import resources_for

ADDRESS = "ann.example@example.com"

# One address of each form a delivery can hold.
ADDRESSES = [
    ADDRESS,
    "Anna.Müller@test.com",
    "josé.garcía@correo.es",
    "δοκιμή@παράδειγμα.δοκιμή",
    "用户@例子.广告",
    "user@[192.168.0.1]",
    "user@[IPv6:2001:db8::1]",
    "root@localhost",
    '"john doe"@example.com',
    "o'brien+tag@example.org",
    "\u00a0ann@example.com\u200b",
]


def test_mask_emails_masks_every_address_and_nothing_else():
    assert mask_emails(f"{ADDRESS}: 1, timeStamp: 2") == "an***@example.com: 1, timeStamp: 2"
    assert mask_emails("a@b.co and Bo.X@mail.example.org") == "a***@b.co and Bo***@mail.example.org"
    assert mask_emails("s3://bucket/landing/customer") == "s3://bucket/landing/customer"
    assert mask_emails("mysql://stedi:***@db.example.org/catalog") == "mysql://stedi:***@db.example.org/catalog"
    assert mask_emails("see @asset, and user@ alone") == "see @asset, and user@ alone"
    # Masking twice changes nothing: a masked local part masks to itself.
    assert mask_emails(mask_emails(ADDRESS)) == mask_emails(ADDRESS)
    assert mask_emails("a***@b.co") == "a***@b.co"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Anna.Müller@test.com", "An***@test.com"),  # Unicode local part
        ("josé.garcía@correo.es", "jo***@correo.es"),
        ("用户@例子.广告", "用户***@例子.广告"),  # Unicode domain
        ("user@[192.168.0.1]", "us***@[192.168.0.1]"),  # address literals
        ("user@[IPv6:::1]", "us***@[IPv6:::1]"),
        ("root@localhost", "ro***@localhost"),  # no dot in the domain
        ('"john doe"@example.com', '"j***"@example.com'),  # quoted local part: its quotes are kept
        ('"a@b"@example.com', '"a***"@example.com'),
        ("KeyError('ann@x.com')", "KeyError('a***@x.com')"),  # a quote before the address is in its local part
        ("\u00a0ann@x.com\u200b", "\u00a0a***@x.com\u200b"),  # so is a Unicode space
        ("ann\u200b@x.com", "an***@x.com"),  # and an invisible character
        ("/data/ann.example@example.com/lakehouse", "/data/an***@example.com/lakehouse"),
        ("ann@x.com.bob@y.com", "an***@x.***@y.com"),  # an address right after another's domain
    ],
)
def test_mask_emails_masks_every_form(text, expected):
    assert mask_emails(text) == expected
    assert mask_emails(expected) == expected


# -- generated addresses -----------------------------------------------------------------

_ATEXT = "!#$%&'*+-/=?^_`{|}~"
_LETTERS = st.characters(categories=["Lu", "Ll", "Lt", "Lo", "Nd"])
_ATOMS = st.text(st.one_of(_LETTERS, st.sampled_from(_ATEXT)), min_size=1, max_size=8)
_DOT_ATOM = st.lists(_ATOMS, min_size=1, max_size=3).map(".".join)
_QUOTED = st.lists(
    st.one_of(_LETTERS, st.sampled_from(" @.,:;<>()[]" + _ATEXT), st.sampled_from(['\\"', "\\\\"])), max_size=8
).map(lambda pieces: '"' + "".join(pieces) + '"')  # escaped quotes and backslashes too
_LABEL = st.text(st.one_of(_LETTERS, st.just("-")), min_size=1, max_size=8).filter(lambda label: label[0] != "-")
_HOST = st.lists(_LABEL, min_size=1, max_size=3).map(".".join)  # one label: a dotless domain
_IPV4 = st.ip_addresses(v=4).map(lambda ip: f"[{ip}]")
_IPV6 = st.ip_addresses(v=6).map(lambda ip: f"[IPv6:{ipaddress.IPv6Address(ip).compressed}]")
_AROUND = st.sampled_from(["", "\u00a0", "\u200b", "\ufeff", "\u3000", "\u2060"])


@st.composite
def addresses(draw) -> str:
    """An address of any form SMTP allows, sometimes with Unicode spaces or invisible characters around it."""
    local = draw(st.one_of(_DOT_ATOM, _QUOTED))
    domain = draw(st.one_of(_HOST, _IPV4, _IPV6))
    return f"{draw(_AROUND)}{local}@{domain}{draw(_AROUND)}"


# Text an address is written in: messages, URIs, key: value lists, reprs.
_BEFORE = st.sampled_from(["", " ", "email: ", "cannot read s3://raw/", "(", "'", '"', "<", "\n", "key=", "[", "a, "])
_AFTER = st.sampled_from(["", " ", ".json", ")", "'", '"', ">", ": 3", ", b", ".", "/lakehouse", "]"])


def _spellings(address: str) -> set[str]:
    """``address`` as it may be written into the event log: as is, and JSON-escaped."""
    return {address, json.dumps(address)[1:-1], json.dumps(address, ensure_ascii=False)[1:-1]}


# A local part already of a mask's shape shows no more of itself than its mask:
# at most two characters not ending in a star, then three stars (``ab***@x.com``),
# or one to three stars, which the mask's stars contain (``*@0`` -> ``***@0``);
# quoted, a quote, at most one character, three stars and a quote, after any
# spaces and invisible characters (``"***"@[0.0.0.0]``).
_OWN_MASK = re.compile(r'\*{1,3}|(?:[^*]|.[^*])?\*\*\*', re.DOTALL)
_OWN_MASK_QUOTED = re.compile(r'"[^*]?\*\*\*"', re.DOTALL)


def _is_its_own_mask(address: str) -> bool:
    local = address.rpartition("@")[0]
    quoted = local.lstrip("\u00a0\u200b\ufeff\u3000\u2060")
    return bool(_OWN_MASK.fullmatch(local) or _OWN_MASK_QUOTED.fullmatch(quoted))


def _unmasked(text: str, addresses: list[str]) -> list[str]:
    return [
        address
        for address in addresses
        if not _is_its_own_mask(address) and any(spelling in text for spelling in _spellings(address))
    ]


def test_an_address_of_a_masks_shape_is_its_own_mask():
    for address in ['"***"@[0.0.0.0]', "ab***@x.com", '"a***"@x.com', "***@x.com", "\u00a0***@x.com", '\u00a0"***"@x']:
        assert _is_its_own_mask(address) and mask_emails(address) == address
    for address in ["*@0", "**@x.com"]:
        assert _is_its_own_mask(address) and mask_emails(address) == "***@" + address.rpartition("@")[2]
    for address in ["abc***@x.com", "a****@x.com", '"ab***"@x.com', "ann@x.com", "\u00a0ab***@x.com"]:
        assert not _is_its_own_mask(address) and mask_emails(address) != address


def _written_apart(part: tuple[str, str, str]) -> bool:
    # A quote right before a quoted local part makes another address of the
    # text: '""@0"@x' is the address '""@0' followed by '"@x'.
    before, address, _ = part
    return not (before.endswith('"') and address.lstrip("\u00a0\u200b\ufeff\u3000\u2060").startswith('"'))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_BEFORE, addresses(), _AFTER).filter(_written_apart), min_size=1, max_size=4))
@example([("", '\u00a0"***"@[0.0.0.0]', ""), ("", "#@[IPv6:::]\u200b", ""), ("", "*@0", "")])
def test_no_generated_address_survives_masking_in_running_text(parts):
    # Written apart: one space at least between two addresses and their surroundings.
    text = " ".join(before + address + after for before, address, after in parts)
    result = mask_emails(text)
    assert _unmasked(result, [address for _, address, _ in parts]) == []
    assert mask_emails(result) == result


@settings(max_examples=300, deadline=None)
@given(addresses())
def test_a_masked_address_keeps_at_most_two_characters_of_its_local_part(address):
    local, _, domain = address.rpartition("@")
    result = mask_email(address)
    quoted = local.startswith('"')
    assert result.endswith('***"@' + domain if quoted else f"***@{domain}")
    kept = result.removesuffix(f"@{domain}").rstrip('"*')
    assert len(kept) <= 2 and local.startswith(kept)
    assert mask_email(result) == result


def _texts(value) -> list[str]:
    """Every string in masked metadata: keys, texts, JSON data."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, MetadataValue):
        return _texts(value.value)
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in _texts(key) + _texts(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _texts(item)]
    return []


def _metadata_holding(addresses: list[str]) -> dict:
    listed = ", ".join(addresses)
    return {
        **{address: index for index, address in enumerate(addresses)},
        "fields": MetadataValue.text(f"unknown fields: {listed}"),
        "doc": MetadataValue.md(f"*{listed}*"),
        "uri": MetadataValue.path(f"s3://bucket/{addresses[0]}/table"),
        "json": MetadataValue.json({"names": addresses, addresses[0]: {"nested": listed}}),
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(addresses(), min_size=1, max_size=5))
def test_no_generated_address_survives_mask_metadata(addresses):
    texts = "\n".join(_texts(mask_metadata(_metadata_holding(addresses))))
    assert _unmasked(texts, addresses) == []


@settings(max_examples=10, deadline=None)
@given(st.lists(addresses(), min_size=3, max_size=8))
def test_no_generated_address_reaches_a_run_s_event_log(addresses):
    listed = ", ".join(addresses)

    def steps(context):
        context.log.info(mask_emails(f"read {listed}"))
        yield masked(Output(None, metadata=_metadata_holding(addresses)))
        raise ValueError(f"cannot read {listed}")

    @asset
    def emitting(context) -> None:
        yield from masking_errors(steps(context))

    instance = DagsterInstance.ephemeral()
    result = materialize_to_memory([emitting], instance=instance, raise_on_error=False)
    assert not result.success  # the step failed after its output, so its error is in the log too
    event_log = _event_log(instance, result.run_id)
    assert "***" in event_log  # the addresses are there, masked
    assert _unmasked(event_log, addresses) == []


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


def test_unknown_fields_named_like_emails_never_reach_the_event_log(tmp_path):
    landing = tmp_path / "landing"
    files = simulate_landing(customers=20, seed=7)
    emails = set()
    for relative, data in files.items():
        (landing / relative).parent.mkdir(parents=True, exist_ok=True)
        (landing / relative).write_bytes(data)
        if relative.startswith("customer/"):
            emails |= {json.loads(line)["email"] for line in data.decode().splitlines() if line.strip()}
    first = json.loads(next(data for relative, data in files.items() if relative.startswith("customer/")).splitlines()[0])
    unknown_fields = {address: "a field no column declares" for address in ADDRESSES}
    (landing / "customer" / "extra.json").write_text(json.dumps({**first, **unknown_fields}) + "\n")

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
    assert sorted(unknown.split(", ")) == sorted(f"{mask_email(address)}: 1" for address in ADDRESSES)
    assert _unmasked(event_log, ADDRESSES) == []
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
