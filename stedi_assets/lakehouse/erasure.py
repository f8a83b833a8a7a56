"""Erasure of a person on request, and erased stays erased.

:func:`erase` removes people, named by email, from everything the lakehouse
holds:

- the rows of the zone tables that are theirs: customer records by ``email``,
  accelerometer readings by ``user``, step-trainer readings (and the
  machine-learning rows made of them) by the ``serialNumber`` of a device of
  theirs, unless another customer who consents to research owns that device;
- the quarantined records whose raw text names them (their email, or a
  device of theirs in the step-trainer feed);
- the delivery records each landing step stores per file (see
  ``stedi_assets.lakehouse.ingestion``);
- the landing files: their lines are removed, every other line kept byte for byte;
- the table history: every retained snapshot that refers to a file that held
  them is expired, and the files only those snapshots referred to are deleted.

A table is changed file by file: only the Parquet files that hold the person
are rewritten (with Polars, whichever engine computes the tables, as the
ledger is), in one commit that removes them and adds their rewritten copies;
the files without the person are kept as they are. A second, empty commit
follows, so that the current snapshot no longer refers to the manifest that
lists the removed files (a manifest keeps each file's column bounds, which can
be the person's email); the snapshots before it are then expired.

Identities are compared as the rules compare them (``rules.identity_of``,
``rules.device_of``): ``Anna@X.com `` is ``anna@x.com``.

**Erased stays erased.** Each erased identity (email, and each device erased
with it) is kept in the ``erasure_register`` table as a salted SHA-256 (the
salt is the register table's own UUID), with when, what was touched and the
run id; no personal data. Every landing step reads the register and drops the
records of those identities from the files it reads (counted in the ledger's
``records_erased``), so neither a full refresh nor a late delivery brings the
person back. :func:`traces` finds, by the same hashes, any row of an erased
identity in any file of any retained snapshot (the audit check
``erased_identities_absent``).

The person is registered *before* anything is erased: an erasure that stops
half way still keeps them out of later deliveries, and running it again
completes it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import narwhals as nw
import polars as pl

from stedi_assets.domain import rules
from stedi_assets.domain.rules import device_of, identity_of
from stedi_assets.domain.schemas import DELIVERED_FROM, ERASURE_REGISTER, FEEDS, delivered_records_schema
from stedi_assets.lakehouse.catalog import TableNotPublishedError, catalog_errors
from stedi_assets.lakehouse.engines import LandingRead
from stedi_assets.lakehouse.history import snapshot_files, withdrawn_customers
from stedi_assets.lakehouse.maintenance import plain_uri, referenced_files
from stedi_assets.lakehouse.storage import LandingError, StorageError, join_uri
from stedi_assets.lakehouse.tables import DELIVERIES_FOLDER, RUN_ID, UPSTREAM, StaleUpdateError, commit_update, data_file_paths, write_folder

if TYPE_CHECKING:
    from stedi_assets.lakehouse.lakehouse import Lakehouse

REGISTER = ERASURE_REGISTER.name
EMAIL, DEVICE, TEXT = "email", "device", "text"

IDENTITY_COLUMNS: dict[str, tuple[str, str]] = {
    "customer_landing": ("email", EMAIL),
    "customer_trusted": ("email", EMAIL),
    "customer_curated": ("email", EMAIL),
    "accelerometer_landing": ("user", EMAIL),
    "accelerometer_trusted": ("user", EMAIL),
    "step_trainer_landing": ("serialNumber", DEVICE),
    "step_trainer_trusted": ("serialNumber", DEVICE),
    "machine_learning_curated": ("serialNumber", DEVICE),
    **{f"{feed}_quarantine": ("raw_text", TEXT) for feed in FEEDS},
}
"""Every table that can hold a person -> (the column that says whose a row is, what it holds)."""

FEED_KEYS: dict[str, tuple[str, str]] = {feed: IDENTITY_COLUMNS[f"{feed}_landing"] for feed in FEEDS}
"""The column of a feed's records that says whose a record is."""

ERASED = "stedi.erasure"
"""Snapshot property: ``true`` on the snapshots an erasure committed (rows removed, nothing added)."""

COMMIT_ATTEMPTS = 5
_EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class ErasureError(ValueError):
    """An erasure request that cannot be carried out (e.g. not an email address); one line."""


def identity_digest(salt: str, kind: str, key: str) -> str:
    """The one-way hash the register keeps of a normalized identity."""
    return hashlib.sha256(f"{salt}\x00{kind}\x00{key}".encode()).hexdigest()


def _key(kind: str, value: str) -> str:
    return identity_of(value) if kind == EMAIL else device_of(value)


@dataclass(frozen=True)
class Register:
    """The erased identities, as the register holds them: hashes with the register's salt."""

    salt: str = ""
    emails: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    _seen: dict[tuple[str, str], bool] = field(default_factory=dict, compare=False, repr=False)
    """Values already judged: each distinct value is normalized and hashed once, however many files hold it."""

    @property
    def empty(self) -> bool:
        return not (self.emails or self.devices)

    def holds(self, kind: str, value: str | None) -> bool:
        """Whether ``value`` (as delivered: it is normalized here) is an erased identity of ``kind``."""
        if value is None:
            return False
        hashes = self.emails if kind == EMAIL else self.devices
        if not hashes:
            return False
        erased = self._seen.get((kind, value))
        if erased is None:
            erased = self._seen[(kind, value)] = identity_digest(self.salt, kind, _key(kind, value)) in hashes
        return erased

    def with_identities(self, emails: Iterable[str], devices: Iterable[str]) -> Register:
        """This register with more identities (normalized already)."""
        return Register(
            self.salt,
            self.emails | {identity_digest(self.salt, EMAIL, e) for e in emails},
            self.devices | {identity_digest(self.salt, DEVICE, d) for d in devices},
        )


# -- recognizing a person in text (quarantined records, landing lines) -------------

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_EMAIL_LIKE = re.compile(r"[^\s\"'<>,;:(){}\[\]\\]+@[^\s\"'<>,;:(){}\[\]\\]+")


def _tokens(text: str) -> Iterable[str]:
    """The strings of a record's text that may be an identity: each JSON string (unescaped) and each
    email-like word of the text in NFKC (a record too broken to parse still names its email)."""
    for match in _QUOTED.finditer(text):
        raw = match.group(1)
        if "\\" not in raw:
            yield raw
            continue
        try:
            yield json.loads(f'"{raw}"')
        except ValueError:
            yield raw
    yield from _EMAIL_LIKE.findall(text if text.isascii() else unicodedata.normalize("NFKC", text))


class TextMatcher:
    """Whether a text names an erased person (or, with ``devices``, an erased device); each distinct
    string is hashed once, however many texts hold it."""

    def __init__(self, register: Register, devices: bool):
        self.register, self.devices = register, devices
        self._seen: dict[str, bool] = {}

    def __call__(self, text: str | None) -> bool:
        if text is None or self.register.empty:
            return False
        for token in _tokens(text):
            erased = self._seen.get(token)
            if erased is None:
                erased = self.register.holds(EMAIL, token) or (self.devices and self.register.holds(DEVICE, token))
                self._seen[token] = erased
            if erased:
                return True
        return False


def names_erased(text: str | None, register: Register, devices: bool) -> bool:
    """Whether ``text`` names an erased person (or, with ``devices``, an erased device)."""
    return TextMatcher(register, devices)(text)


def matched_values(values: Iterable[str | None], kind: str, register: Register, devices: bool = False) -> list[str]:
    """The ``values`` (as stored) that are, or for ``TEXT`` name, an erased identity."""
    if register.empty:
        return []
    if kind == TEXT:
        names = TextMatcher(register, devices)
        return sorted({v for v in values if v is not None and names(v)})
    return sorted({v for v in values if v is not None and register.holds(kind, v)})


def _text_devices(table: str) -> bool:
    """Whether a quarantined record of ``table`` names a person by a device too (the step-trainer feed's)."""
    return table.startswith("step_trainer")


# -- the register ----------------------------------------------------------------


def read_register(lakehouse: Lakehouse, create: bool = False) -> Register:
    """The erased identities; ``create``: create the (empty) register when there is none, so that every
    lakehouse that ingests has one to query."""
    try:
        table = lakehouse.load_table(REGISTER, create=create)
    except TableNotPublishedError:
        return Register()
    if table.metadata.current_snapshot_id is None and create:
        # An empty first snapshot: the register is published, and says nobody was erased.
        from pyiceberg.exceptions import CommitFailedException

        try:
            transaction = table.transaction()
            with transaction.update_snapshot().fast_append():
                pass
            table = transaction.commit_transaction()
        except CommitFailedException:  # another step published it first
            table = lakehouse.load_table(REGISTER)
    rows = _register_rows(lakehouse, table)
    salt = str(table.metadata.table_uuid)
    by_kind = {EMAIL: set(), DEVICE: set()}
    for digest, kind in rows.select("identity_sha256", "identity_kind").iter_rows():
        by_kind.setdefault(kind, set()).add(digest)
    return Register(salt, frozenset(by_kind[EMAIL]), frozenset(by_kind[DEVICE]))


def _register_rows(lakehouse: Lakehouse, table) -> pl.DataFrame:
    snapshot_id = table.metadata.current_snapshot_id
    files = data_file_paths(table, snapshot_id) if snapshot_id is not None else []
    if not files:
        return pl.DataFrame(schema=ERASURE_REGISTER.polars_schema)
    store = lakehouse.store_for(files[0])
    return pl.scan_parquet(
        files, storage_options=store.storage_options, schema=ERASURE_REGISTER.polars_schema, missing_columns="insert"
    ).collect()


def _record_in_register(lakehouse: Lakehouse, rows: pl.DataFrame, run_id: str) -> None:
    """The register with ``rows`` in place of those of ``run_id``: one commit, planned again if another
    erasure committed meanwhile."""
    identifier = lakehouse.table_identifier(REGISTER)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        table = lakehouse.load_table(REGISTER, create=True)
        base = table.metadata.current_snapshot_id
        kept = _register_rows(lakehouse, table).filter(pl.col("run_id") != run_id)
        contents = pl.concat([kept, rows.select(ERASURE_REGISTER.column_names)]).sort("requested_at", "identity_sha256")
        folder = write_folder(table, run_id)
        store = lakehouse.store_for(folder)
        store.prepare_directory(folder)
        path = join_uri(folder, "part-00000.parquet")
        contents.write_parquet(path, storage_options=store.storage_options)
        try:
            with catalog_errors(lakehouse.catalog_settings(), REGISTER):
                commit_update(
                    lambda: lakehouse.load_table(REGISTER), identifier, [path], {RUN_ID: run_id}, base, replace=True
                )
            return
        except StaleUpdateError:
            store.delete_files([path])
            if attempt == COMMIT_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)


# -- ingestion: dropping erased people from what is read --------------------------


def drop_erased(lakehouse: Lakehouse, feed: str, read: LandingRead, register: Register) -> tuple[LandingRead, dict[str, int]]:
    """``read`` without the records of erased identities (kept or quarantined), and how many each file had.

    The records an engine stored while reading are rewritten without them
    first, so that no delivery record keeps them either. The records dropped
    are not counted in ``records_read``: to the tables they were never delivered.
    """
    if register.empty:
        return read, {}
    column, kind = FEED_KEYS[feed]
    devices = _text_devices(feed)
    values = read.records.select(column).unique().collect().get_column(column).to_list()
    matched = matched_values(values, kind, register)
    texts = read.quarantine.select("raw_text").unique().collect().get_column("raw_text").to_list()
    matched_texts = matched_values(texts, TEXT, register, devices)
    if not matched and not matched_texts:
        return read, {}
    erased: dict[str, int] = {}
    distinct_by_file = dict(read.distinct_by_file) if read.distinct_by_file is not None else None
    records = read.records
    if matched:
        held = nw.col(column).is_in(matched)
        erased_rows = records.filter(held)
        for uri, count in erased_rows.group_by(DELIVERED_FROM).agg(nw.len()).collect().rows():
            erased[uri] = erased.get(uri, 0) + count
        if distinct_by_file is not None:
            for uri, count in rules.distinct(erased_rows).group_by(DELIVERED_FROM).agg(nw.len()).collect().rows():
                distinct_by_file[uri] = distinct_by_file.get(uri, 0) - count
        if read.stored:
            store = lakehouse.store_for(read.stored[0])
            for uri in read.stored:
                _rewrite_parquet(store, uri, column, matched)
            # Scanned again: a scan made before the files were rewritten may know their old footers.
            records = lakehouse.get_engine().scan(list(read.stored), delivered_records_schema(feed), store)
        records = records.filter(~nw.col(column).is_in(matched))
    quarantine = read.quarantine
    if matched_texts:
        named = nw.col("raw_text").is_in(matched_texts)
        for uri, count in quarantine.filter(named).group_by("source_file").agg(nw.len()).collect().rows():
            erased[uri] = erased.get(uri, 0) + count
        quarantine = quarantine.filter(nw.col("raw_text").is_null() | ~named)
    return replace(
        read, records=records, quarantine=quarantine, records_read=read.records_read - sum(erased.values()),
        quarantined=None, distinct_by_file=distinct_by_file,
    ), erased


# -- files -----------------------------------------------------------------------


def _without(frame: pl.DataFrame, column: str, matched: list[str]) -> pl.DataFrame:
    return frame.filter(~pl.col(column).is_in(matched).fill_null(False))


def _rewrite_parquet(store, uri: str, column: str, matched: list[str]) -> int:
    """Rewrite the Parquet file ``uri`` in place without the rows whose ``column`` is in ``matched``
    (atomically: a temporary file renamed over it, or one PUT); returns the rows removed."""
    frame = pl.read_parquet(uri, storage_options=store.storage_options)
    kept = _without(frame, column, matched)
    if kept.height == frame.height:
        return 0
    buffer = io.BytesIO()
    kept.write_parquet(buffer)
    store.write_bytes(uri, buffer.getvalue())
    return frame.height - kept.height


def _file_values(store, uri: str, column: str) -> list[str | None]:
    return pl.scan_parquet(uri, storage_options=store.storage_options).select(column).unique().collect()[column].to_list()


_LINE = re.compile(rb"[^\n]*\n|[^\n]+\Z")


def without_lines(data: bytes, names: Callable[[str], bool], plain: tuple[bytes, ...] = ()) -> tuple[bytes, int]:
    """A landing file's bytes without the records ``names`` says are an erased person's; every other line
    kept byte for byte (a gzip file is decompressed and compressed again; a JSON array file is written
    again as an array of the records kept, one per line). Returns the new bytes and the records removed.

    ``plain``: the identities looked for, normalized and in ASCII, when they all are. A line of ASCII
    without an escape can then only name one if it holds one in lower case, which is quicker to see.
    """
    compressed = data[:2] == b"\x1f\x8b"
    text = gzip.decompress(data) if compressed else data
    removed = 0
    if text.lstrip()[:1] == b"[":
        try:
            records = json.loads(text)
        except ValueError:
            records = None
        if isinstance(records, list):
            kept = [r for r in records if not names(json.dumps(r, ensure_ascii=False))]
            removed = len(records) - len(kept)
            if removed:
                text = ("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in kept) + "\n]\n").encode()
            return (gzip.compress(text, mtime=0) if compressed and removed else text if removed else data), removed
    kept_lines = []
    for line in _LINE.findall(text):
        if plain and line.isascii() and b"\\" not in line and not any(p in line.lower() for p in plain):
            kept_lines.append(line)
        elif names(line.decode("utf-8", errors="replace")):
            removed += 1
        else:
            kept_lines.append(line)
    if not removed:
        return data, 0
    text = b"".join(kept_lines)
    return (gzip.compress(text, mtime=0) if compressed else text), removed


# -- erasure ---------------------------------------------------------------------


@dataclass
class TableErasure:
    """What an erasure changed in one table (or, for ``{feed} landing files``, in one feed's files)."""

    table: str
    rows_removed: int = 0
    files_rewritten: int = 0
    files_kept: int = 0
    snapshots_expired: int = 0
    files_deleted: int = 0
    source_files: set[str] = field(default_factory=set, repr=False)
    """Landing files the removed rows came from (quarantine and delivery records say)."""
    readings: pl.DataFrame | None = field(default=None, repr=False)
    """The accelerometer readings removed (``READING``), which machine_learning_curated may pair with another device."""

    @property
    def touched(self) -> bool:
        return bool(self.rows_removed or self.files_rewritten or self.snapshots_expired or self.files_deleted)


@dataclass
class Erasure:
    """What one erasure request did."""

    run_id: str
    identities: tuple[str, ...]
    """The normalized emails erased (kept in memory only, never stored)."""
    found: dict[str, bool]
    devices_erased: int
    tables: list[TableErasure]

    @property
    def rows_removed(self) -> int:
        return sum(t.rows_removed for t in self.tables)

    @property
    def files_rewritten(self) -> int:
        return sum(t.files_rewritten + t.files_deleted for t in self.tables)

    @property
    def snapshots_expired(self) -> int:
        return sum(t.snapshots_expired for t in self.tables)


def parse_emails(texts: Iterable[str]) -> list[str]:
    """The normalized identities of ``texts``; :class:`ErasureError` naming the first that is not an email address."""
    identities = []
    for text in texts:
        key = identity_of(text) if isinstance(text, str) else ""
        if not _EMAIL_SHAPE.fullmatch(key):
            raise ErasureError(f"not an email address: {text!r}")
        identities.append(key)
    if not identities:
        raise ErasureError("no email address given")
    return list(dict.fromkeys(identities))


def erase(
    lakehouse: Lakehouse, emails: Iterable[str], run_id: str, progress: Callable[[TableErasure], None] | None = None
) -> Erasure:
    """Erase the people ``emails`` from everything the lakehouse holds, and register them (see the module)."""
    identities = parse_emails(emails)
    requested_at = int(time.time() * 1000)
    lakehouse.catalog(create=True)
    register = read_register(lakehouse, create=True)
    devices = _devices_to_erase(lakehouse, identities)
    # Only this request's identities are looked for: those erased before are gone already.
    request = Register(register.salt).with_identities(identities, devices)
    present = _present_identities(lakehouse)
    _record_in_register(lakehouse, _rows(request, identities, devices, requested_at, None, run_id, {}, []), run_id)

    results: list[TableErasure] = []
    for table in IDENTITY_COLUMNS:
        # machine_learning_curated pairs readings by time alone: a row with one of their readings is theirs too.
        readings = [r.readings for r in results if r.readings is not None]
        paired = pl.concat(readings).unique() if table == "machine_learning_curated" and readings else None
        result = erase_from_table(lakehouse, table, request, run_id, paired)
        results.append(result)
        if progress is not None and result.touched:
            progress(result)
    for feed in FEEDS:
        result = erase_delivery_records(lakehouse, feed, request)
        results.append(result)
        if progress is not None and result.touched:
            progress(result)
    for feed in FEEDS:
        sources = {f for r in results if r.table.startswith(feed) for f in r.source_files}
        plain = [*identities, *(devices if _text_devices(feed) else ())]
        result = erase_from_landing_files(lakehouse, feed, request, sources, plain)
        results.append(result)
        if progress is not None and result.touched:
            progress(result)

    removed = sum(r.rows_removed for r in results)
    found = {identity: identity in present or (len(identities) == 1 and removed > 0) for identity in identities}
    erasure = Erasure(run_id, tuple(identities), found, len(devices), results)
    _record_in_register(
        lakehouse, _rows(request, identities, devices, requested_at, int(time.time() * 1000), run_id, found, results),
        run_id,
    )
    return erasure


def _present_identities(lakehouse: Lakehouse) -> set[str]:
    """The people (email identities) the landing tables and the quarantine hold, to tell who was found."""
    present: set[str] = set()
    for table in ("customer_landing", "accelerometer_landing"):
        column = IDENTITY_COLUMNS[table][0]
        try:
            frame = rules.with_identity(lakehouse.read_table([table], in_process=True).select(column).unique(), column)
        except TableNotPublishedError:
            continue
        present |= set(frame.unique().collect().get_column(column).drop_nulls().to_list())
    for feed in FEEDS:
        try:
            texts = lakehouse.read_table([f"{feed}_quarantine"], in_process=True).select("raw_text").collect()
        except TableNotPublishedError:
            continue
        present |= {
            identity_of(token) for text in texts.get_column("raw_text").drop_nulls().to_list() for token in _tokens(text)
        }
    return present


def _rows(
    request: Register, identities: list[str], devices: list[str], requested_at: int, erased_at: int | None,
    run_id: str, found: Mapping[str, bool], results: list[TableErasure],
) -> pl.DataFrame:
    touched = "; ".join(
        f"{r.table}: {r.rows_removed} row(s) removed, {r.files_rewritten} file(s) rewritten, "
        f"{r.snapshots_expired} snapshot(s) expired, {r.files_deleted} file(s) deleted"
        for r in results if r.touched
    ) or None
    totals = (
        sum(r.rows_removed for r in results), sum(r.files_rewritten + r.files_deleted for r in results),
        sum(r.snapshots_expired for r in results),
    ) if erased_at is not None else (None, None, None)
    rows = [
        (identity_digest(request.salt, kind, key), kind, requested_at, erased_at, run_id,
         None if erased_at is None else int(found.get(key, True)), touched, *totals)
        for kind, keys in ((EMAIL, identities), (DEVICE, devices))
        for key in keys
    ]
    return pl.DataFrame(rows, schema=ERASURE_REGISTER.polars_schema, orient="row")


def _devices_to_erase(lakehouse: Lakehouse, identities: list[str]) -> list[str]:
    """The devices named in the customer records (kept or quarantined) of the people ``identities``, but
    those another customer who consents to research owns too."""
    try:
        landing = lakehouse.read_table(["customer_landing"], in_process=True)
    except TableNotPublishedError:
        return []
    records = rules.with_identity(landing, "email").select("email", rules.device("serialNumber")).collect().rows()
    try:
        quarantine = lakehouse.read_table(["customer_quarantine"], in_process=True)
        texts = quarantine.select("source_file", "line", "raw_text").collect().rows()
        records += [(email, serial) for _, _, email, _, serial in rules.quarantined_customer_rows(texts)]
    except TableNotPublishedError:
        pass
    erased = set(identities)
    withdrawn = withdrawn_customers(landing).people
    theirs = {serial for email, serial in records if email in erased and serial is not None}
    shared = {
        serial for email, serial in records
        if serial in theirs and email is not None and email not in erased and email not in withdrawn
    }
    return sorted(theirs - shared)


def erase_from_table(
    lakehouse: Lakehouse, table: str, request: Register, run_id: str, readings: pl.DataFrame | None = None
) -> TableErasure:
    """Remove the rows of ``request``'s identities (and, given, rows holding one of their accelerometer
    ``readings``) from ``table``'s current snapshot (the files holding them rewritten, the others kept),
    then expire every snapshot that refers to a file that held them."""
    column, kind = IDENTITY_COLUMNS[table]
    devices = _text_devices(table)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            iceberg_table = lakehouse.load_table(table)
        except TableNotPublishedError:
            return TableErasure(table)
        store = lakehouse.store_for(iceberg_table.location())
        matches = _FileMatches(store, column, kind, request, devices, readings)
        result = TableErasure(table)
        snapshot = iceberg_table.metadata.current_snapshot()
        if snapshot is not None:
            with catalog_errors(lakehouse.catalog_settings(), table):
                current = {plain_uri(t.file.file_path): t.file for t in iceberg_table.scan(snapshot_id=snapshot.snapshot_id).plan_files()}
            holding = [uri for uri in sorted(current) if matches(uri)]
            result.files_kept = len(current) - len(holding)
            if holding:
                try:
                    _commit_without(lakehouse, table, iceberg_table, current, holding, matches, result, run_id)
                except StaleUpdateError:
                    if attempt == COMMIT_ATTEMPTS:
                        raise
                    time.sleep(0.05 * attempt)
                    continue
        _expire_holding(lakehouse, table, matches, result)
        return result
    raise AssertionError("unreachable")


READING = ("timestamp", "x", "y", "z")
"""What machine_learning_curated keeps of an accelerometer reading: a row with a person's reading is theirs."""


class _FileMatches:
    """Which rows of a Parquet file are an erased identity's (each file looked at once): by the value of
    its identity column, or (``readings``) by being one of the person's accelerometer readings."""

    def __init__(
        self, store, column: str, kind: str, register: Register, devices: bool, readings: pl.DataFrame | None = None
    ):
        self.store, self.column, self.kind, self.register, self.devices = store, column, kind, register, devices
        self.readings = readings if readings is not None and readings.height else None
        self._matched: dict[str, list[str]] = {}
        self._holds: dict[str, bool] = {}

    def __call__(self, uri: str) -> bool:
        """Whether the file holds a row of an erased identity."""
        if uri not in self._holds:
            try:
                matched = matched_values(_file_values(self.store, uri, self.column), self.kind, self.register, self.devices)
                holds = bool(matched)
                if not holds and self.readings is not None:
                    scan = pl.scan_parquet(uri, storage_options=self.store.storage_options).select(READING)
                    holds = scan.join(self.readings.lazy(), on=READING, how="semi", nulls_equal=True).select(pl.len()).collect().item() > 0
            except (OSError, StorageError, pl.exceptions.PolarsError):
                matched, holds = [], False  # gone already (deleted by maintenance): nothing of it to read
            self._matched[uri], self._holds[uri] = matched, holds
        return self._holds[uri]

    def split(self, uri: str, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The rows of ``frame`` (the file ``uri``) kept, and those erased."""
        self(uri)
        held = pl.col(self.column).is_in(self._matched[uri]).fill_null(False)
        kept, erased = frame.filter(~held), frame.filter(held)
        if self.readings is not None:
            erased = pl.concat([erased, kept.join(self.readings, on=READING, how="semi", nulls_equal=True)])
            kept = kept.join(self.readings, on=READING, how="anti", nulls_equal=True)
        return kept, erased

    @property
    def holding(self) -> set[str]:
        return {uri for uri, holds in self._holds.items() if holds}


def _commit_without(
    lakehouse: Lakehouse, table: str, iceberg_table, current: Mapping, holding: list[str], matches: _FileMatches,
    result: TableErasure, run_id: str,
) -> None:
    from pyiceberg.exceptions import CommitFailedException, ValidationException
    from pyiceberg.io.pyarrow import parquet_file_to_data_file

    store = lakehouse.store_for(iceberg_table.location())
    folder = write_folder(iceberg_table, run_id)
    store.prepare_directory(folder)
    written, removed, sources, readings = [], 0, set(), []
    for number, uri in enumerate(holding):
        kept, erased = matches.split(uri, pl.read_parquet(uri, storage_options=store.storage_options))
        removed += erased.height
        if "source_file" in erased.columns:
            sources |= set(erased["source_file"].drop_nulls().to_list())
        if set(READING) <= set(erased.columns) and "user" in erased.columns:
            readings.append(erased.select(READING))
        if kept.height:
            path = join_uri(folder, f"part-{number:05d}.parquet")
            kept.write_parquet(path, storage_options=store.storage_options)
            written.append(path)
    snapshot = iceberg_table.metadata.current_snapshot()
    recorded = snapshot.summary.additional_properties if snapshot.summary else {}
    # Still computed from the same inputs, less the rows removed: the next ordinary run recomputes it.
    properties = {**{k: v for k, v in recorded.items() if k.startswith(UPSTREAM)}, RUN_ID: run_id, ERASED: "true"}
    try:
        with catalog_errors(lakehouse.catalog_settings(), table):
            data_files = [parquet_file_to_data_file(iceberg_table.io, iceberg_table.metadata, f) for f in written]
            transaction = iceberg_table.transaction()
            with transaction.update_snapshot(snapshot_properties=properties).overwrite() as update:
                for uri in holding:
                    update.delete_data_file(current[uri])
                for data_file in data_files:
                    update.append_data_file(data_file)
            committed = transaction.commit_transaction()
    except (CommitFailedException, ValidationException):
        store.delete_files(written)
        raise StaleUpdateError(f"table {table}: another run committed while the erasure was committed") from None
    # A snapshot that no longer refers to the manifest listing the removed files (with their column bounds).
    with catalog_errors(lakehouse.catalog_settings(), table):
        transaction = committed.transaction()
        with transaction.update_snapshot(snapshot_properties=properties).fast_append():
            pass
        transaction.commit_transaction()
    result.rows_removed += removed
    result.files_rewritten += len(holding)
    result.source_files |= sources
    result.readings = pl.concat(readings) if readings else None


def _expire_holding(lakehouse: Lakehouse, table: str, matches: _FileMatches, result: TableErasure) -> None:
    """Expire every snapshot but the current one that refers (as live or as removed) to a file holding an
    erased identity; delete what only they referred to, and the unreferenced files that hold one."""
    iceberg_table = lakehouse.load_table(table)
    io_ = iceberg_table.io
    current = iceberg_table.metadata.current_snapshot_id
    expire = []
    for snapshot in iceberg_table.snapshots():
        if snapshot.snapshot_id == current:
            continue
        files = {
            plain_uri(entry.data_file.file_path)
            for manifest in snapshot.manifests(io_)
            for entry in manifest.fetch_manifest_entry(io_, discard_deleted=False)
        }
        if any(matches(f) for f in sorted(files)):
            expire.append(snapshot.snapshot_id)
    candidates = snapshot_files(iceberg_table, expire) if expire else set()
    if expire:
        # Manifests of the expired snapshots that list removed files only.
        for snapshot_id in expire:
            for manifest in iceberg_table.metadata.snapshot_by_id(snapshot_id).manifests(io_):
                candidates.add(plain_uri(manifest.manifest_path))
        with catalog_errors(lakehouse.catalog_settings(), table):
            iceberg_table.maintenance.expire_snapshots().by_ids(expire).commit()
            iceberg_table = lakehouse.load_table(table)
    store = lakehouse.store_for(iceberg_table.location())
    # Files a failed write left behind, and files the table no longer refers to, that hold an erased identity.
    listed = [plain_uri(uri) for uri in store.list_files(join_uri(iceberg_table.location(), "data"))]
    candidates |= {uri for uri in listed if uri.endswith(".parquet") and matches(uri)}
    candidates |= matches.holding
    still_referenced = referenced_files(iceberg_table)
    gone = sorted(candidates - still_referenced)
    existing = set(listed) | {plain_uri(u) for u in store.list_files(join_uri(iceberg_table.location(), "metadata"))}
    gone = [uri for uri in gone if uri in existing]
    store.delete_files(gone)
    result.snapshots_expired += len(expire)
    result.files_deleted += len(gone)


def erase_delivery_records(lakehouse: Lakehouse, feed: str, request: Register) -> TableErasure:
    """Rewrite the stored delivery records of ``feed`` (every file, current or not) without the identities."""
    result = TableErasure(f"{feed} delivery records")
    folder = join_uri(lakehouse.table_location([f"{feed}_landing"]), DELIVERIES_FOLDER)
    store = lakehouse.store_for(folder)
    column, kind = FEED_KEYS[feed]
    for uri in store.list_files(folder):
        if not uri.endswith(".parquet") or uri.rsplit("/", 1)[-1].startswith("."):
            continue
        matched = matched_values(_file_values(store, uri, column), kind, request)
        if not matched:
            result.files_kept += 1
            continue
        frame = pl.read_parquet(uri, storage_options=store.storage_options)
        result.source_files |= set(frame.filter(pl.col(column).is_in(matched))[DELIVERED_FROM].drop_nulls().to_list())
        result.rows_removed += _rewrite_parquet(store, uri, column, matched)
        result.files_rewritten += 1
    return result


def erase_from_landing_files(
    lakehouse: Lakehouse, feed: str, request: Register, sources: set[str], plain: Iterable[str] = ()
) -> TableErasure:
    """Rewrite the landing files of ``feed`` that hold the identities without their lines.

    The files looked at: those the removed rows came from, and every file the
    ledger does not hold as ingested in its present version (a delivery not
    read yet). A file left without any record is deleted.
    """
    from stedi_assets.lakehouse.ledger import current_deliveries, read_ledger

    result = TableErasure(f"{feed} landing files")
    try:
        versions = {uri: v for uri, v in lakehouse.landing_versions(feed).items() if not v.refused}
    except LandingError:  # no landing file of the feed: nothing to rewrite
        return result
    current = current_deliveries(read_ledger(lakehouse)[0], feed)
    unknown = any(not row["records_uri"] for row in current.values())
    to_look_at = [
        uri for uri, version in versions.items()
        if unknown or uri in sources or current.get(uri, {}).get("fingerprint") != version.fingerprint
    ]
    result.files_kept = len(versions) - len(to_look_at)
    names = TextMatcher(request, _text_devices(feed))
    keys = [key.encode() for key in plain]
    quick = tuple(keys) if keys and all(key.isascii() for key in keys) else ()
    for uri in to_look_at:
        store = lakehouse.store_for(uri)
        data = store.read_bytes(uri)
        rewritten, removed = without_lines(data, names, quick)
        if not removed:
            result.files_kept += 1
            continue
        result.rows_removed += removed
        if rewritten.strip() in (b"", b"[\n\n]") or (rewritten[:2] == b"\x1f\x8b" and not gzip.decompress(rewritten).strip()):
            store.delete_files([uri])
            result.files_deleted += 1
        else:
            store.write_bytes(uri, rewritten)
            result.files_rewritten += 1
    return result


# -- the audit -------------------------------------------------------------------


@dataclass(frozen=True)
class Traces:
    """Rows of erased identities found in one table's files, over every retained snapshot."""

    table: str
    rows: int
    files: int
    snapshots: tuple[int, ...]


def traces(lakehouse: Lakehouse, table: str, register: Register | None = None) -> Traces:
    """Every data file of every retained snapshot of ``table``, its identity column hashed and compared
    with the register."""
    register = read_register(lakehouse) if register is None else register
    iceberg_table = lakehouse.load_table(table)
    if register.empty:
        return Traces(table, 0, 0, ())
    column, kind = IDENTITY_COLUMNS[table]
    store = lakehouse.store_for(iceberg_table.location())
    matches = _FileMatches(store, column, kind, register, _text_devices(table))
    holding_snapshots, holding_files = [], set()
    for snapshot in iceberg_table.snapshots():
        files = data_file_paths(iceberg_table, snapshot.snapshot_id)
        found = [plain_uri(f) for f in files if matches(plain_uri(f))]
        if found:
            holding_snapshots.append(snapshot.snapshot_id)
            holding_files |= set(found)
    rows = sum(
        matches.split(f, pl.read_parquet(f, storage_options=store.storage_options))[1].height for f in sorted(holding_files)
    )
    return Traces(table, rows, len(holding_files), tuple(holding_snapshots))


def describe(result: TableErasure) -> str:
    """One summary line of what an erasure changed in a table."""
    return (
        f"{result.table}: {result.rows_removed} row(s) removed, {result.files_rewritten} file(s) rewritten, "
        f"{result.files_kept} kept, {result.files_deleted} deleted, {result.snapshots_expired} snapshot(s) expired"
    )

