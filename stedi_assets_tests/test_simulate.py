"""Tests of the landing-zone simulator: determinism, file shape, the feed quirks it must
reproduce, and its expected counts against an independent implementation of the rules.

Everything runs on simulated bytes in memory (one test writes to ``tmp_path``); the
real data set, the pipeline and any storage other than the local disk are not touched.
"""

from __future__ import annotations

import collections
import json
import re

import pytest

from stedi_assets.domain.simulate import (
    DEFAULT_COUNTS,
    expected_counts,
    simulate_landing,
    write_landing,
)

KEY_ORDER = {
    "customer": [
        "customerName", "email", "phone", "birthDay", "serialNumber",
        "registrationDate", "lastUpdateDate",
        "shareWithResearchAsOfDate", "shareWithPublicAsOfDate", "shareWithFriendsAsOfDate",
    ],
    "accelerometer": ["user", "timestamp", "x", "y", "z"],
    "step_trainer": ["sensorReadingTime", "serialNumber", "distanceFromObject"],
}
RESEARCH = "shareWithResearchAsOfDate"


def parse_feeds(files: dict[str, bytes]) -> dict[str, list[dict[str, object]]]:
    """The records of each feed, parsed from the simulated files."""
    feeds: dict[str, list[dict[str, object]]] = {feed: [] for feed in KEY_ORDER}
    for path, content in sorted(files.items()):
        feed = path.split("/")[0]
        feeds[feed].extend(json.loads(line) for line in content.decode().splitlines())
    return feeds


def independent_counts(files: dict[str, bytes]) -> dict[str, int]:
    """The six rules, written differently from the simulator's own bookkeeping."""
    feeds = parse_feeds(files)
    by_email: dict[str, list[dict[str, object]]] = collections.defaultdict(list)
    for record in feeds["customer"]:
        by_email[str(record["email"])].append(record)
    chosen = {}
    for email, records in by_email.items():
        newest = max(int(r["lastUpdateDate"]) for r in records)  # type: ignore[call-overload]
        candidates = [r for r in records if r["lastUpdateDate"] == newest]
        # A tie is resolved toward the record without research consent.
        without_consent = [r for r in candidates if r.get(RESEARCH) is None]
        chosen[email] = (without_consent or candidates)[0]
    customer_trusted = {e: r for e, r in chosen.items() if r.get(RESEARCH) is not None}
    accelerometer_trusted = [r for r in feeds["accelerometer"] if r["user"] in customer_trusted]
    users_with_readings = {r["user"] for r in accelerometer_trusted}
    customer_curated = {e: r for e, r in customer_trusted.items() if e in users_with_readings}
    owner_of = {r["serialNumber"]: e for e, r in customer_curated.items()}
    assert len(owner_of) == len(customer_curated), "a serial number has two curated owners"
    step_trainer_trusted = [r for r in feeds["step_trainer"] if r["serialNumber"] in owner_of]
    users_at: dict[object, list[object]] = collections.defaultdict(list)
    for reading in accelerometer_trusted:
        users_at[reading["timestamp"]].append(reading["user"])
    pairs = same_customer = 0
    for step in step_trainer_trusted:
        for user in users_at[step["sensorReadingTime"]]:
            pairs += 1
            same_customer += user == owner_of[step["serialNumber"]]
    return {
        "customer_landing": len(feeds["customer"]),
        "accelerometer_landing": len(feeds["accelerometer"]),
        "step_trainer_landing": len(feeds["step_trainer"]),
        "customer_trusted": len(customer_trusted),
        "accelerometer_trusted": len(accelerometer_trusted),
        "customer_curated": len(customer_curated),
        "step_trainer_trusted": len(step_trainer_trusted),
        "machine_learning_curated": pairs,
        "machine_learning_curated_same_customer": same_customer,
        "cross_customer_pairs": pairs - same_customer,
    }


@pytest.fixture(scope="module")
def default_files() -> dict[str, bytes]:
    return simulate_landing()


@pytest.fixture(scope="module")
def default_feeds(default_files: dict[str, bytes]) -> dict[str, list[dict[str, object]]]:
    return parse_feeds(default_files)


def test_default_counts_are_the_published_profile() -> None:
    assert expected_counts() == DEFAULT_COUNTS


@pytest.mark.parametrize(
    ("customers", "seed"),
    [
        (200, 20230806),  # the default data set
        (57, 3),  # a small size with another seed
        (5, 2),  # fewer customers than quirks: every quirk is squeezed in
        (1, 9),  # a single customer, who is also re-delivered
        (900, 11),  # enough customers to exercise every quirk many times
    ],
)
def test_expected_counts_match_an_independent_implementation(customers: int, seed: int) -> None:
    assert expected_counts(customers, seed) == independent_counts(simulate_landing(customers, seed))


def test_same_seed_gives_identical_bytes(default_files: dict[str, bytes]) -> None:
    assert simulate_landing() == default_files
    assert simulate_landing(seed=1) != default_files


def test_file_layout(default_files: dict[str, bytes]) -> None:
    pattern = re.compile(r"^(customer|accelerometer|step_trainer)/\1-\d{13}\.json$")
    assert all(pattern.match(path) for path in default_files)
    feeds_per_file = collections.Counter(path.split("/")[0] for path in default_files)
    assert feeds_per_file["customer"] == 1
    assert feeds_per_file["accelerometer"] > 1
    assert feeds_per_file["step_trainer"] == 1
    for content in default_files.values():
        assert content.endswith(b"\n") and b"\r" not in content


def test_keys_keep_the_real_feeds_order(default_feeds: dict[str, list[dict[str, object]]]) -> None:
    for feed, records in default_feeds.items():
        for record in records:
            keys = list(record)
            # Absent consent fields are left out; the others keep their place.
            assert keys == [k for k in KEY_ORDER[feed] if k in record]


def test_missing_consent_is_both_absent_and_null(default_feeds: dict[str, list[dict[str, object]]]) -> None:
    customers = default_feeds["customer"]
    assert any(RESEARCH not in r for r in customers)
    assert any(RESEARCH in r and r[RESEARCH] is None for r in customers)


def test_about_half_the_customers_consent_to_research() -> None:
    share = DEFAULT_COUNTS["customer_trusted"] / 200
    assert 0.4 < share < 0.6


def test_some_customers_share_only_with_public_or_friends(
    default_feeds: dict[str, list[dict[str, object]]],
) -> None:
    assert any(
        r.get(RESEARCH) is None
        and (r.get("shareWithPublicAsOfDate") is not None or r.get("shareWithFriendsAsOfDate") is not None)
        for r in default_feeds["customer"]
    )


def test_redelivered_customers_differ_in_date_and_consent(
    default_feeds: dict[str, list[dict[str, object]]],
) -> None:
    by_email = collections.defaultdict(list)
    for record in default_feeds["customer"]:
        by_email[record["email"]].append(record)
    redelivered = [records for records in by_email.values() if len(records) > 1]
    assert len(redelivered) >= 2
    for records in redelivered:
        assert len({r.get(RESEARCH) is None for r in records}) == 2
        assert len({r["serialNumber"] for r in records}) == 1
    assert any(len({r["lastUpdateDate"] for r in records}) == 2 for records in redelivered)


def test_accelerometer_reads_at_the_owners_step_trainer_instants(
    default_feeds: dict[str, list[dict[str, object]]],
) -> None:
    serial_of = {r["email"]: r["serialNumber"] for r in default_feeds["customer"]}
    instants_of = collections.defaultdict(set)
    for step in default_feeds["step_trainer"]:
        instants_of[step["serialNumber"]].add(step["sensorReadingTime"])
    readings = [r for r in default_feeds["accelerometer"] if r["user"] in serial_of]
    assert all(r["timestamp"] in instants_of[serial_of[r["user"]]] for r in readings)
    per_instant = collections.Counter((r["user"], r["timestamp"]) for r in readings)
    assert max(per_instant.values()) > 1


def test_some_instants_are_shared_by_two_customers(
    default_feeds: dict[str, list[dict[str, object]]],
) -> None:
    emails = {r["email"] for r in default_feeds["customer"]}
    users_at = collections.defaultdict(set)
    for reading in default_feeds["accelerometer"]:
        if reading["user"] in emails:
            users_at[reading["timestamp"]].add(reading["user"])
    assert any(len(users) == 2 for users in users_at.values())
    assert DEFAULT_COUNTS["cross_customer_pairs"] > 0


def test_some_readings_have_no_customer(default_feeds: dict[str, list[dict[str, object]]]) -> None:
    emails = {r["email"] for r in default_feeds["customer"]}
    serials = {r["serialNumber"] for r in default_feeds["customer"]}
    assert any(r["user"] not in emails for r in default_feeds["accelerometer"])
    assert any(r["serialNumber"] not in serials for r in default_feeds["step_trainer"])


def test_names_are_fictional(default_feeds: dict[str, list[dict[str, object]]]) -> None:
    addresses = [r["email"] for r in default_feeds["customer"]] + [
        r["user"] for r in default_feeds["accelerometer"]
    ]
    assert all(re.fullmatch(r"[A-Za-z]+\.[A-Za-z]+\d*@example\.com", str(a)) for a in addresses)


def test_write_landing_creates_the_folder(tmp_path, default_files: dict[str, bytes]) -> None:
    root = tmp_path / "new" / "landing"
    written = write_landing(root, default_files)
    assert sorted(written) == sorted(str(root / path) for path in default_files)
    for path, content in default_files.items():
        assert (root / path).read_bytes() == content
