"""A deterministic simulator of a STEDI landing zone, for users who have no STEDI data.

``simulate_landing()`` returns newline-delimited JSON files shaped like the real
feeds, quirks included:

* roughly half the customers consent to research; a missing consent is sometimes
  an absent field and sometimes an explicit ``null``; some customers consent
  only to public or friends sharing;
* every step-trainer device takes a series of readings; the owner's phone
  records one to three accelerometer readings at each of those instants;
* a few instants are shared by two different customers, so a join on time alone
  pairs one customer's device with another customer's phone;
* a few customers are delivered twice under the same email, with consent that
  differs between the two records (withdrawn later, granted later, or a tie on
  ``lastUpdateDate``);
* a few consenting customers own a device but never used the phone app;
* some accelerometer users and some step-trainer devices have no customer record.

``expected_counts()`` gives the row count of every lakehouse table for the
simulated data. It applies the lakehouse rules in plain Python to the generated
records, independently of the pipeline, so that the pipeline can be checked
against it. Only the standard library is used, so the simulator runs anywhere.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
import random

DEFAULT_CUSTOMERS = 200
DEFAULT_SEED = 20230806

# Row counts for simulate_landing() with its default arguments; the
# ``simulated`` data-set profile checks a lakehouse built from it against these.
DEFAULT_COUNTS: dict[str, int] = {
    "customer_landing": 203,
    "accelerometer_landing": 16_914,
    "step_trainer_landing": 6_120,
    "customer_trusted": 103,
    "accelerometer_trusted": 8_380,
    "customer_curated": 99,
    "step_trainer_trusted": 2_970,
    "machine_learning_curated": 8_415,
    "machine_learning_curated_same_customer": 8_380,
    "cross_customer_pairs": 35,
}

# All instants are fixed offsets from this one (2023-08-03 18:13:20 UTC), never
# the clock, so that a seed always gives the same bytes.
_EPOCH_MS = 1_691_086_400_000
# Customers register one after another, about this far apart.
_REGISTRATION_GAP_MS = 2_600
_READINGS_PER_DEVICE = 30
_ACCELEROMETER_FILES = 3
_RESEARCH_CONSENT_SHARE = 0.5
# Weights of 3, 2 and 1 accelerometer readings at one instant, as in the real feed.
_READINGS_PER_INSTANT = ((3, 0.83), (2, 0.16), (1, 0.01))
# Kinds of re-delivered customer, in the order they are assigned.
_REDELIVERY_KINDS = ("withdrawn", "granted", "tie")

_FIRST_NAMES = (
    "Ada", "Alan", "Amara", "Bianca", "Boris", "Carmen", "Chen", "Dalia", "Diego",
    "Elena", "Emeka", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan",
    "Jonas", "Keiko", "Lars", "Leila", "Marco", "Maya", "Nadia", "Omar", "Priya",
    "Quinn", "Rafael", "Rosa", "Sami", "Sofia", "Tariq", "Uma", "Viktor", "Wen",
    "Ximena", "Yusuf", "Zara", "Zoltan",
)
_LAST_NAMES = (
    "Abbott", "Baptiste", "Castillo", "Dimitrov", "Eriksen", "Fontaine", "Gallo",
    "Haddad", "Ibarra", "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura",
    "Okafor", "Petrov", "Quintero", "Rossi", "Santos", "Tanaka", "Ueda", "Varga",
    "Weber", "Xu", "Yamada", "Zhou", "Adeyemi", "Brennan", "Costa", "Dubois",
    "Esposito", "Fischer", "Gomez", "Horvat", "Ivanova", "Jovanovic", "Kim",
    "Larsen", "Mensah", "Novak",
)

_CUSTOMER_FIELDS = (
    "customerName", "email", "phone", "birthDay", "serialNumber",
    "registrationDate", "lastUpdateDate",
    "shareWithResearchAsOfDate", "shareWithPublicAsOfDate", "shareWithFriendsAsOfDate",
)
_SHARE_FIELDS = _CUSTOMER_FIELDS[-3:]
_RESEARCH = "shareWithResearchAsOfDate"

Record = dict[str, object]


@dataclasses.dataclass(frozen=True)
class SimulatedFeeds:
    """The generated records of each feed, in delivery order; absent fields are omitted."""

    customer: list[Record]
    accelerometer: list[Record]
    step_trainer: list[Record]
    last_reading_ms: int


@dataclasses.dataclass
class _Person:
    """Someone who owns a step trainer and the phone app, with or without a customer record."""

    email: str
    serial_number: str
    reading_times_ms: list[int]
    uses_phone_app: bool = True


def _serial_number(rng: random.Random) -> str:
    """A version-4 shaped uuid string drawn from ``rng``."""
    digits = f"{rng.getrandbits(128):032x}"
    digits = digits[:12] + "4" + digits[13:16] + "89ab"[rng.randrange(4)] + digits[17:]
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _names(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """``count`` distinct (customerName, email) pairs; a number is appended once combinations run out."""
    combinations = len(_FIRST_NAMES) * len(_LAST_NAMES)
    order = rng.sample(range(combinations), combinations)
    names = []
    for index in range(count):
        first, last = divmod(order[index % combinations], len(_LAST_NAMES))
        suffix = str(index // combinations) if index >= combinations else ""
        first_name, last_name = _FIRST_NAMES[first], _LAST_NAMES[last]
        names.append(
            (f"{first_name} {last_name}", f"{first_name}.{last_name}{suffix}@example.com")
        )
    return names


def _reading_series(rng: random.Random, around_ms: int, taken: set[int]) -> list[int]:
    """A device's reading instants near ``around_ms``, none of them in ``taken`` (which is updated)."""
    start_ms = around_ms + rng.randint(-60_000, 15_000)
    interval_ms = rng.randint(2_000, 4_000)
    times = []
    for index in range(_READINGS_PER_DEVICE):
        instant = start_ms + index * interval_ms
        # Instants shared between devices are made on purpose below, not by chance.
        while instant in taken:
            instant += 1
        taken.add(instant)
        times.append(instant)
    return times


def _customer_record(
    rng: random.Random,
    name: str,
    email: str,
    serial_number: str,
    registered_ms: int,
    updated_ms: int,
    consents: dict[str, bool],
) -> Record:
    """One customer object with the real feed's key order; a missing consent is absent or null."""
    record: Record = {
        "customerName": name,
        "email": email,
        "phone": f"801555{rng.randint(100, 199):04d}",
        # The real feed's birthdays are 1 January of years 967 to 1965, not zero-padded.
        "birthDay": f"{rng.randint(967, 1965)}-01-01",
        "serialNumber": serial_number,
        "registrationDate": registered_ms,
        "lastUpdateDate": updated_ms,
    }
    for field in _SHARE_FIELDS:
        if consents[field]:
            record[field] = updated_ms
        elif rng.random() < 0.3:
            record[field] = None
    return record


_AXIS_VALUES = [(float(x), float(y), float(z)) for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)]


def _accelerometer_readings(rng: random.Random, person: _Person) -> list[Record]:
    """One to three readings of the person's phone at each instant their device read."""
    counts, weights = zip(*_READINGS_PER_INSTANT)
    readings: list[Record] = []
    times = list(person.reading_times_ms)
    rng.shuffle(times)
    for instant in times:
        # Readings of one instant differ, as in the real feed: an identical
        # record would be a duplicate delivery, which the landing zone drops.
        for x, y, z in rng.sample(_AXIS_VALUES, rng.choices(counts, weights)[0]):
            readings.append({"user": person.email, "timestamp": instant, "x": x, "y": y, "z": z})
    return readings


def _share_instants(rng: random.Random, pairs: int, candidates: list[_Person], shared: set[int]) -> None:
    """Give ``pairs`` pairs of distinct candidates one common reading instant each."""
    if len(candidates) < 2:
        return
    for _ in range(pairs):
        first, second = rng.sample(candidates, 2)
        instant = rng.choice([t for t in first.reading_times_ms if t not in shared])
        index = rng.choice(
            [i for i, t in enumerate(second.reading_times_ms) if t not in shared]
        )
        second.reading_times_ms[index] = instant
        shared.add(instant)


def generate_feeds(customers: int = DEFAULT_CUSTOMERS, seed: int = DEFAULT_SEED) -> SimulatedFeeds:
    """The records of the three feeds for ``customers`` customers, drawn from ``seed``."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    rng = random.Random(seed)
    strangers = max(1, customers // 50)
    names = _names(rng, customers + strangers)
    taken: set[int] = set()

    customer_records: list[Record] = []
    redelivered: list[Record] = []
    people: list[_Person] = []
    consenting: list[_Person] = []
    redelivery_count = min(len(_REDELIVERY_KINDS), customers)
    for index in range(customers):
        name, email = names[index]
        registered_ms = _EPOCH_MS + index * _REGISTRATION_GAP_MS + rng.randint(0, 999)
        person = _Person(email, _serial_number(rng), _reading_series(rng, registered_ms, taken))
        consents = {
            _RESEARCH: rng.random() < _RESEARCH_CONSENT_SHARE,
            "shareWithPublicAsOfDate": rng.random() < 0.5,
            "shareWithFriendsAsOfDate": rng.random() < 0.5,
        }
        updated_ms = registered_ms
        if index < redelivery_count:
            kind = _REDELIVERY_KINDS[index]
            # The re-delivered record is the newer one, except in a tie where
            # both carry the same lastUpdateDate and the one without research
            # consent must win.
            later_ms = registered_ms if kind == "tie" else registered_ms + rng.randint(60_000, 70_000)
            first_consents = {**consents, _RESEARCH: kind == "withdrawn"}
            second_consents = {**consents, _RESEARCH: kind != "withdrawn"}
            customer_records.append(
                _customer_record(rng, name, email, person.serial_number, registered_ms, registered_ms, first_consents)
            )
            redelivered.append(
                _customer_record(rng, name, email, person.serial_number, registered_ms, later_ms, second_consents)
            )
        else:
            if rng.random() < 0.05:
                updated_ms = registered_ms + rng.randint(60_000, 70_000)
            customer_records.append(
                _customer_record(rng, name, email, person.serial_number, registered_ms, updated_ms, consents)
            )
            if consents[_RESEARCH]:
                consenting.append(person)
        people.append(person)

    # Consenting customers who own a device but never used the phone app: their
    # step-trainer readings must not reach the trusted zone.
    for person in rng.sample(consenting, min(len(consenting), max(1, customers // 50))):
        person.uses_phone_app = False

    app_users = [p for p in people if p.uses_phone_app]
    shared: set[int] = set()
    pairs = max(1, customers // 40)
    _share_instants(rng, pairs, [p for p in consenting if p.uses_phone_app], shared)
    _share_instants(rng, pairs, app_users, shared)

    # Phones and devices with no customer record: each stranger's phone and device
    # read at the same instants, so only the consent rules keep them apart.
    for index in range(strangers):
        _, email = names[customers + index]
        around_ms = _EPOCH_MS + rng.randrange(customers * _REGISTRATION_GAP_MS)
        people.append(_Person(email, _serial_number(rng), _reading_series(rng, around_ms, taken)))

    delivery_order = list(people)
    rng.shuffle(delivery_order)
    accelerometer: list[Record] = []
    for person in delivery_order:
        if person.uses_phone_app:
            accelerometer.extend(_accelerometer_readings(rng, person))
    rng.shuffle(delivery_order)
    step_trainer: list[Record] = [
        {
            "sensorReadingTime": instant,
            "serialNumber": person.serial_number,
            "distanceFromObject": rng.randint(201, 300),
        }
        for person in delivery_order
        for instant in person.reading_times_ms
    ]
    last_reading_ms = max(max(p.reading_times_ms) for p in people)
    return SimulatedFeeds(customer_records + redelivered, accelerometer, step_trainer, last_reading_ms)


def _ndjson(records: list[Record], separators: tuple[str, str]) -> bytes:
    return "".join(json.dumps(r, separators=separators) + "\n" for r in records).encode()


def simulate_landing(customers: int = DEFAULT_CUSTOMERS, seed: int = DEFAULT_SEED) -> dict[str, bytes]:
    """Landing-zone files (relative path -> NDJSON bytes) for ``customers`` customers."""
    feeds = generate_feeds(customers, seed)
    # Files are named after their delivery instant, a little after the last reading.
    delivered_ms = feeds.last_reading_ms + 600_000
    files = {
        # The real customer feed is written with spaces after separators, the
        # sensor feeds without.
        f"customer/customer-{delivered_ms}.json": _ndjson(feeds.customer, (", ", ": ")),
    }
    chunk = -(-len(feeds.accelerometer) // _ACCELEROMETER_FILES)
    for part in range(_ACCELEROMETER_FILES):
        rows = feeds.accelerometer[part * chunk : (part + 1) * chunk]
        if rows:
            files[f"accelerometer/accelerometer-{delivered_ms + 50 * (part + 1)}.json"] = _ndjson(rows, (",", ":"))
    files[f"step_trainer/step_trainer-{delivered_ms + 50 * (_ACCELEROMETER_FILES + 1)}.json"] = _ndjson(
        feeds.step_trainer, (",", ":")
    )
    return files


def write_landing(root: str | pathlib.Path, files: dict[str, bytes]) -> list[str]:
    """Write ``files`` under the local folder ``root``; return the written paths."""
    written = []
    for relative, content in files.items():
        target = pathlib.Path(root) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        written.append(str(target))
    return written


def count_tables(feeds: SimulatedFeeds) -> dict[str, int]:
    """Row counts of the lakehouse tables built from ``feeds`` by the six rules, in plain Python."""
    # Rule 2: one record per email, the latest lastUpdateDate, on a tie the one
    # without research consent. Later records in this order win; ties beyond
    # these two keys cannot change any count.
    latest: dict[str, Record] = {}
    for record in sorted(
        feeds.customer,
        key=lambda r: (r["lastUpdateDate"], r.get(_RESEARCH) is None),
    ):
        latest[str(record["email"])] = record
    trusted_emails = {email for email, r in latest.items() if r.get(_RESEARCH) is not None}
    # Rule 3: semi join on the user's email.
    accelerometer_trusted = [r for r in feeds.accelerometer if r["user"] in trusted_emails]
    # Rule 4: trusted customers who have accelerometer readings.
    curated_emails = trusted_emails & {str(r["user"]) for r in accelerometer_trusted}
    owners: dict[str, set[str]] = collections.defaultdict(set)
    for email in curated_emails:
        owners[str(latest[email]["serialNumber"])].add(email)
    # Rule 5: semi join on the device's serial number.
    step_trainer_trusted = [r for r in feeds.step_trainer if r["serialNumber"] in owners]
    # Rule 6: inner join on the instant; the variant also requires the phone's
    # user to own the device.
    readings_at = collections.Counter(r["timestamp"] for r in accelerometer_trusted)
    readings_by_user_at = collections.Counter((r["user"], r["timestamp"]) for r in accelerometer_trusted)
    machine_learning = sum(readings_at[r["sensorReadingTime"]] for r in step_trainer_trusted)
    same_customer = sum(
        readings_by_user_at[(email, r["sensorReadingTime"])]
        for r in step_trainer_trusted
        for email in owners[str(r["serialNumber"])]
    )
    return {
        "customer_landing": len(feeds.customer),
        "accelerometer_landing": len(feeds.accelerometer),
        "step_trainer_landing": len(feeds.step_trainer),
        "customer_trusted": len(trusted_emails),
        "accelerometer_trusted": len(accelerometer_trusted),
        "customer_curated": len(curated_emails),
        "step_trainer_trusted": len(step_trainer_trusted),
        "machine_learning_curated": machine_learning,
        "machine_learning_curated_same_customer": same_customer,
        "cross_customer_pairs": machine_learning - same_customer,
    }


def expected_counts(customers: int = DEFAULT_CUSTOMERS, seed: int = DEFAULT_SEED) -> dict[str, int]:
    """Row counts every lakehouse table must have when built from ``simulate_landing(customers, seed)``."""
    return count_tables(generate_feeds(customers, seed))
