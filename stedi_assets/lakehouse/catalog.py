"""The Iceberg catalog of a lakehouse, built from its settings.

* a local lakehouse: an SQL catalog in the SQLite file ``{lakehouse}/catalog.db``
  (nothing to install or start), or ``catalog_uri`` (any SQLAlchemy URL, e.g.
  PostgreSQL for a team sharing one catalog);
* an ``s3://`` lakehouse: the Glue Data Catalog (region and credentials from
  the same AWS settings as the S3 store; the Glue endpoint from the usual
  ``AWS_ENDPOINT_URL_GLUE``/``AWS_ENDPOINT_URL``), or ``catalog_uri`` when set.

Every catalog is named ``stedi``: an SQL catalog keeps the name in its rows and
lists only the tables of its own name, so every reader must use the same one.

Failures become one :class:`CatalogError` line naming the table and the catalog.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from stedi_assets.settings import DEFAULT_NAMESPACE
from stedi_assets.lakehouse.storage import is_s3_uri, local_path

CATALOG_NAME = "stedi"
"""The name every reader of an SQL catalog must use: it lists only tables of its own name."""
CATALOG_FILE = "catalog.db"
RECOVER_COMMAND = "stedi recover-catalog"
"""Registers tables stored under the lakehouse root again from their metadata files (``recovery``)."""

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,254}$")


class CatalogError(RuntimeError):
    """The catalog or a table's metadata cannot be used; the message names the table and the catalog."""


class TableNotPublishedError(RuntimeError):
    """A table was read before any snapshot of it was committed (or before there was a catalog)."""


@dataclass(frozen=True)
class CatalogSettings:
    """Where the catalog is, from the lakehouse's settings."""

    lakehouse_uri: str
    catalog_uri: str = ""
    namespace: str = DEFAULT_NAMESPACE
    glue_database: str = ""
    storage_options: Mapping[str, Any] | None = None
    """The S3 store's resolved Polars-style options (region, credentials, endpoint), or None locally."""

    @property
    def kind(self) -> str:
        if self.catalog_uri:
            return "sql"
        return "glue" if is_s3_uri(self.lakehouse_uri) else "sqlite"

    @property
    def database(self) -> str:
        """The namespace (Glue database) holding every table."""
        name = self.glue_database if self.kind == "glue" and self.glue_database else self.namespace
        if not _NAME.match(name):
            raise CatalogError(f"invalid namespace {name!r}: use letters, digits, underscores (and, in Glue, -) only")
        # Glue and Athena store database names in lowercase.
        return name.lower()

    @property
    def sql_uri(self) -> str:
        if self.catalog_uri:
            return self.catalog_uri
        return f"sqlite:///{local_path(self.lakehouse_uri) / CATALOG_FILE}"

    def describe(self) -> str:
        """The catalog in a message: its URL without a password, or the Glue database."""
        if self.kind == "glue":
            return f"Glue Data Catalog (database {self.database})"
        parsed = urlparse(self.sql_uri)
        if parsed.password:
            netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
            return urlunparse(parsed._replace(netloc=netloc))
        return self.sql_uri

    def identifier(self, table: str) -> str:
        return f"{self.database}.{table}"


def fileio_properties(storage_options: Mapping[str, Any] | None) -> dict[str, str]:
    """pyiceberg's ``s3.*`` properties from the S3 store's Polars-style options."""
    if not storage_options:
        return {}
    names = {
        "aws_endpoint_url": "s3.endpoint",
        "aws_region": "s3.region",
        "aws_access_key_id": "s3.access-key-id",
        "aws_secret_access_key": "s3.secret-access-key",
        "aws_session_token": "s3.session-token",
    }
    properties = {names[k]: str(v) for k, v in storage_options.items() if k in names and v}
    properties["s3.connect-timeout"] = "5"
    return properties


def glue_properties(storage_options: Mapping[str, Any] | None) -> dict[str, str]:
    """The Glue client's region and credentials: the S3 store's, so both speak for the same account."""
    if not storage_options:
        return {}
    names = {
        "aws_region": "glue.region",
        "aws_access_key_id": "glue.access-key-id",
        "aws_secret_access_key": "glue.secret-access-key",
        "aws_session_token": "glue.session-token",
    }
    return {names[k]: str(v) for k, v in storage_options.items() if k in names and v}


def build_catalog(settings: CatalogSettings, create: bool = True):
    """The catalog described by ``settings``.

    ``create=False`` is for readers: a local lakehouse without ``catalog.db``
    has no tables, and reading it must not create the file.
    """
    io = fileio_properties(settings.storage_options)
    with catalog_errors(settings, None):
        if settings.kind == "glue":
            from pyiceberg.catalog.glue import GlueCatalog

            # The endpoint is left to boto3: AWS_ENDPOINT_URL_GLUE or AWS_ENDPOINT_URL.
            return GlueCatalog(CATALOG_NAME, **glue_properties(settings.storage_options), **io)
        from pyiceberg.catalog.sql import SqlCatalog

        if settings.kind == "sqlite":
            path = local_path(settings.lakehouse_uri) / CATALOG_FILE
            if not create and not path.exists():
                raise TableNotPublishedError(
                    f"no catalog at {path}: nothing has been published in this lakehouse yet (run `stedi run` first)"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            _check_sqlite_file(path)
        warehouse = settings.lakehouse_uri if is_s3_uri(settings.lakehouse_uri) else local_path(settings.lakehouse_uri).as_uri()
        # Two runs starting together on a new catalog may both create its tables; one of them loses and retries.
        for attempt in range(3):
            try:
                return SqlCatalog(CATALOG_NAME, uri=settings.sql_uri, warehouse=warehouse, **io)
            except Exception as error:  # noqa: BLE001 - sqlalchemy's errors, re-raised below
                if attempt == 2 or "already exists" not in str(error):
                    raise
    raise AssertionError("unreachable")


def _check_sqlite_file(path: Path) -> None:
    """Fail in one line on a file that is not an SQLite database, before SQLAlchemy's long message."""
    if path.exists() and path.stat().st_size:
        with path.open("rb") as handle:
            if handle.read(16) != b"SQLite format 3\x00":
                raise CatalogError(f"{path}: the catalog is not an SQLite database (corrupt or overwritten)")


_ARROW_S3_OBJECT = re.compile(r"(?:key|path) '([^']+)' in bucket '([^']+)'|bucket '([^']+)'")


def _s3_reason(text: str) -> str | None:
    """One phrase for pyarrow's S3 error text (as pyiceberg's FileIO raises it), naming the object."""
    from stedi_assets.lakehouse.storage_s3 import describe_s3_code

    found = _ARROW_S3_OBJECT.search(text)
    if found is None or "AWS Error" not in text:
        return None
    key, bucket = (found.group(1), found.group(2)) if found.group(2) else ("", found.group(3))
    uri = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if "NO_SUCH_BUCKET" in text or "specified bucket does not exist" in text:
        return f"{uri}: {describe_s3_code('NoSuchBucket', bucket)}"
    if "ACCESS_DENIED" in text or "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text:
        return f"{uri}: {describe_s3_code('InvalidAccessKeyId' if 'InvalidAccessKeyId' in text else 'AccessDenied', bucket)}"
    if "NETWORK_CONNECTION" in text or "curlCode" in text:
        return f"{uri}: cannot connect to the S3 endpoint"
    return f"{uri}: {text.split('AWS Error', 1)[1].split('(Request ID', 1)[0].strip(' :')}"


def _reason(error: BaseException) -> str:
    """The first meaningful line of an error from pyiceberg, SQLAlchemy, boto or pyarrow."""
    from pyiceberg.exceptions import NoSuchTableError

    if isinstance(error, OSError) and (phrase := _s3_reason(str(error))):
        return phrase

    if isinstance(error, NoSuchTableError):
        return "no such table"
    if isinstance(error, FileNotFoundError):
        missing = error.filename or str(error)
        return f"table metadata file missing ({missing})"
    if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)) or type(error).__name__ == "ValidationError":
        return f"table metadata is not valid Iceberg metadata ({type(error).__name__})"
    orig = getattr(error, "orig", None)  # SQLAlchemy wraps the driver's error
    if isinstance(orig, sqlite3.Error):
        return f"SQLite: {orig}"
    if hasattr(error, "response") and isinstance(getattr(error, "response"), dict):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '')}".strip()
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return f"{type(error).__name__}: {line}" if type(error).__name__ not in line else line


@contextlib.contextmanager
def catalog_errors(settings: CatalogSettings, table: str | None) -> Iterator[None]:
    """Turn any failure of the catalog or of a table's metadata into one CatalogError line."""
    try:
        yield
    except (CatalogError, TableNotPublishedError):
        raise
    except Exception as error:
        from pyiceberg.exceptions import CommitFailedException

        if isinstance(error, CommitFailedException):
            raise
        what = f"table {settings.identifier(table)}" if table else "the catalog"
        hint = ""
        if table and (isinstance(error, (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError))
                      or type(error).__name__ == "ValidationError"):
            hint = f"; `{RECOVER_COMMAND}` re-points it to its newest readable metadata file"
        raise CatalogError(f"{what} in catalog {settings.describe()}: {_reason(error)}{hint}") from None
