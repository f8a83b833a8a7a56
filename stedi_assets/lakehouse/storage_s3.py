"""An S3 bucket (AWS or any S3-compatible store) as a :class:`~stedi_assets.lakehouse.storage.Store`.

boto3 lists, reads and writes the small objects (landing files) and deletes
unreferenced files for maintenance;
Polars reads and writes the Parquet files itself with its own object-store
client, configured by :attr:`S3Store.storage_options`. Both clients are set
up from one boto3 session, so they agree on credentials, region and endpoint.

Every failure becomes one :class:`~stedi_assets.lakehouse.storage.StorageError` line
naming the URI ("s3://nope/landing/customer: bucket 'nope' does not exist"),
never a boto or object-store stack trace. Retries and timeouts are kept short
so that an unreachable endpoint fails within seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from stedi_assets.lakehouse.storage import KEY_OUTSIDE_PREFIX, FileTooLarge, FileVersion, StorageError


class S3Settings(Protocol):
    """The S3 client settings a store is built from: dagster-aws's ``S3Resource`` has them."""

    profile_name: str | None
    aws_access_key_id: str | None
    aws_secret_access_key: str | None
    aws_session_token: str | None
    region_name: str | None
    endpoint_url: str | None
    use_ssl: bool
    verify: bool | str | None
    max_attempts: int
    use_unsigned_session: bool

# An unreachable endpoint should fail in seconds, not minutes.
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 60
# delete_objects takes at most this many keys per request.
DELETE_BATCH = 1000

_CREDENTIALS_HINT = "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
_S3_CODE_MESSAGES = {
    "InvalidAccessKeyId": f"the AWS access key id is not known to S3 ({_CREDENTIALS_HINT})",
    "SignatureDoesNotMatch": f"the AWS secret access key does not match the access key id ({_CREDENTIALS_HINT})",
    "ExpiredToken": "the AWS session token has expired (refresh AWS_SESSION_TOKEN or the profile's login)",
    "InvalidToken": "the AWS session token is not valid (check AWS_SESSION_TOKEN)",
    "AccessDenied": "access denied (the credentials lack a permission the pipeline needs; see the bucket policy in docs/s3.md)",
    "AllAccessDisabled": "access to this bucket has been disabled",
    "NoSuchKey": "no such object",
    "PermanentRedirect": "the bucket is in another region (set AWS_REGION to the bucket's region)",
    "AuthorizationHeaderMalformed": "the request was signed for the wrong region (set AWS_REGION to the bucket's region)",
}


def split_s3_uri(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of ``s3://bucket/key`` (or ``s3a://``)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "s3a") or not parsed.netloc:
        raise StorageError(f"{uri}: not an S3 URI (expected s3://bucket/prefix)")
    return parsed.scheme, parsed.netloc, parsed.path.lstrip("/")


def _within(key: str, prefix: str) -> bool:
    """Whether ``key`` names a place below ``prefix``: S3 keys are plain text, but a reader that takes
    them as paths (Spark, a sync to disk) resolves an empty, ``.`` or ``..`` segment elsewhere."""
    if not key.startswith(prefix):
        return False
    return all(part not in ("", ".", "..") for part in key[len(prefix):].split("/"))


def describe_s3_code(code: str, bucket: str, fallback: str = "") -> str:
    """A readable phrase for an S3 error code."""
    if code == "NoSuchBucket":
        return f"bucket {bucket!r} does not exist"
    if code in _S3_CODE_MESSAGES:
        return _S3_CODE_MESSAGES[code]
    if code in ("403", "Forbidden"):
        return f"access denied (HTTP 403: {_CREDENTIALS_HINT} and the bucket policy)"
    return f"S3 error {code}" + (f": {fallback}" if fallback else "")


def describe_boto_error(error: BaseException, bucket: str, endpoint: str) -> str | None:
    """A readable phrase for a boto3 failure, or None if it is not a storage failure."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return describe_s3_code(str(details.get("Code", "")), bucket, str(details.get("Message", "")))
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return f"no usable AWS credentials found ({_CREDENTIALS_HINT})"
    if isinstance(error, BotoConnectionError):
        return f"cannot connect to the S3 endpoint {endpoint} ({type(error).__name__})"
    if isinstance(error, BotoCoreError):
        return str(error).strip().splitlines()[0]
    return None


_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_OBJECT_STORE_PATH = re.compile(r"\(path: ([^)\s]+)\)")
_CONNECT_FAILURES = ("Connection refused", "tcp connect error", "error sending request", "timed out", "dns error")


def describe_object_store_error(error: BaseException, uri: str | None = None) -> str | None:
    """One line for a Polars object-store failure on ``uri``, or None if ``error`` is not one.

    Polars reports S3 failures as OSError subclasses whose message is a
    multi-line chain ending in the HTTP or socket error; the S3 error code is
    in the XML body when the server answered. Without ``uri``, the path named
    in the message is used.
    """
    if not isinstance(error, OSError):
        return None
    text = str(error)
    if "object-store error" not in text:
        return None
    if uri is None:
        named = _OBJECT_STORE_PATH.search(text)
        uri = named.group(1) if named else "object store"
    code = _XML_CODE.search(text)
    if code:
        bucket = urlparse(uri).netloc if uri.startswith(("s3://", "s3a://")) else ""
        return f"{uri}: {describe_s3_code(code.group(1), bucket)}"
    url = re.search(r"Error performing \w+ (\S+)", text)
    endpoint = f"{urlparse(url.group(1)).scheme}://{urlparse(url.group(1)).netloc}" if url else "the S3 endpoint"
    if any(marker in text for marker in _CONNECT_FAILURES):
        # The chain's last line is the socket error, numbered: "2: Connection refused (os error 111)".
        cause = re.sub(r"^\d+:\s*", "", text.strip().splitlines()[-1].strip())
        return f"{uri}: cannot connect to {endpoint} ({cause})"
    return f"{uri}: {text.strip().splitlines()[0]}"


@contextmanager
def object_store_errors(uri: str | None = None) -> Iterator[None]:
    """Turn a Polars object-store failure inside the block into one StorageError line.

    Give the URI being written: the path in Polars' message can be another
    file of the same query.
    """
    try:
        yield
    except OSError as error:
        message = describe_object_store_error(error, uri)
        if message is None:
            raise
        raise StorageError(message) from None


def _is_aws_endpoint(endpoint: str) -> bool:
    host = urlparse(endpoint).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


class S3Store:
    """Objects in S3 buckets, through one boto3 client."""

    def __init__(self, client: Any, storage_options: dict[str, Any]):
        self._client = client
        self._storage_options = storage_options

    @classmethod
    def from_resource(cls, s3: S3Settings, uri: str = "s3://") -> S3Store:
        """A store configured by S3 settings such as dagster-aws's ``S3Resource`` (unset fields: boto3's usual resolution).

        boto3 reads the standard AWS variables and files itself (``AWS_PROFILE``,
        ``AWS_ENDPOINT_URL``, ``~/.aws/config``...); Polars is then given the
        credentials, region and endpoint that boto3 resolved. ``uri`` names the
        first location the store is for, in the message of a configuration error.
        """
        try:
            return cls._from_resource(s3)
        except BotoCoreError as error:  # e.g. a profile that does not exist, an expired SSO login
            first_line = str(error).strip().splitlines()[0]
            raise StorageError(f"{uri}: cannot set up the S3 client ({first_line})") from None

    @classmethod
    def _from_resource(cls, s3: S3Settings) -> S3Store:
        session = boto3.session.Session(
            profile_name=s3.profile_name,
            aws_access_key_id=s3.aws_access_key_id,
            aws_secret_access_key=s3.aws_secret_access_key,
            aws_session_token=s3.aws_session_token,
            region_name=s3.region_name,
        )
        retries = {"max_attempts": s3.max_attempts, "mode": "standard"}
        options = dict(
            endpoint_url=s3.endpoint_url,
            use_ssl=s3.use_ssl,
            verify=s3.verify,
        )
        client = session.client(
            "s3",
            config=Config(connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS, retries=retries),
            **options,
        )
        endpoint = client.meta.endpoint_url
        custom_endpoint = not _is_aws_endpoint(endpoint)
        if custom_endpoint:
            # S3-compatible servers (MinIO, Ceph, LocalStack, moto) address
            # buckets by path; a bucket host name would not resolve.
            client = session.client(
                "s3",
                config=Config(
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    read_timeout=READ_TIMEOUT_SECONDS,
                    retries=retries,
                    s3={"addressing_style": "path"},
                ),
                **options,
            )
        if s3.use_unsigned_session:
            from botocore.handlers import disable_signing

            client.meta.events.register("choose-signer.s3.*", disable_signing)

        storage_options: dict[str, Any] = {
            "aws_region": client.meta.region_name or "us-east-1",
            # Polars' own retries: few, so that a dead endpoint fails fast.
            "max_retries": max(s3.max_attempts - 1, 0),
            "retry_timeout_ms": 20_000,
            "connect_timeout": f"{CONNECT_TIMEOUT_SECONDS}s",
        }
        if custom_endpoint:
            storage_options["aws_endpoint_url"] = endpoint
            if endpoint.startswith("http://"):
                storage_options["aws_allow_http"] = "true"
        if s3.use_unsigned_session:
            storage_options["aws_skip_signature"] = "true"
        else:
            credentials = session.get_credentials()
            if credentials is not None:
                frozen = credentials.get_frozen_credentials()
                storage_options["aws_access_key_id"] = frozen.access_key
                storage_options["aws_secret_access_key"] = frozen.secret_key
                if frozen.token:
                    storage_options["aws_session_token"] = frozen.token
        return cls(client, storage_options)

    def __repr__(self) -> str:
        # Never show the credentials held in the storage options.
        return f"S3Store(endpoint={self.endpoint!r})"

    @property
    def endpoint(self) -> str:
        return self._client.meta.endpoint_url

    @property
    def storage_options(self) -> dict[str, Any]:
        return dict(self._storage_options)

    @contextmanager
    def _errors(self, uri: str, bucket: str) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as error:
            phrase = describe_boto_error(error, bucket, self.endpoint)
            raise StorageError(f"{uri}: {phrase}") from None

    def _objects(self, prefix_uri: str) -> Iterator[tuple[str, dict, bool]]:
        """(URI, listing entry, whether its key stays below the prefix) of every object below ``prefix_uri``."""
        scheme, bucket, key = split_s3_uri(prefix_uri)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        with self._errors(prefix_uri, bucket):
            # One page holds at most 1,000 keys; the paginator follows the continuation tokens.
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    if not item["Key"].endswith("/"):  # folder markers written by consoles are no files
                        yield f"{scheme}://{bucket}/{item['Key']}", item, _within(item["Key"], prefix)

    def list_files(self, prefix_uri: str) -> list[str]:
        """Every object below ``prefix_uri`` whose key stays below it (see ``_within``)."""
        return sorted(uri for uri, _, within in self._objects(prefix_uri) if within)

    def fingerprints(self, prefix_uri: str) -> dict[str, str]:
        """Every object below ``prefix_uri`` -> its ETag (which changes whenever its content does)."""
        return {uri: version.fingerprint for uri, version in self.versions(prefix_uri).items()}

    def versions(self, prefix_uri: str) -> dict[str, FileVersion]:
        return {
            uri: FileVersion(item["ETag"].strip('"'), int(item["Size"]), refused="" if within else KEY_OUTSIDE_PREFIX)
            for uri, item, within in self._objects(prefix_uri)
        }

    def read_bytes(self, uri: str, max_bytes: int | None = None) -> bytes:
        _, bucket, key = split_s3_uri(uri)
        with self._errors(uri, bucket):
            response = self._client.get_object(Bucket=bucket, Key=key)
            body = response["Body"]
            if max_bytes is not None and int(response.get("ContentLength", 0)) > max_bytes:
                body.close()  # the object's size is known from the response headers: its body is never read
                raise FileTooLarge(f"{uri}: larger than {max_bytes} bytes ({response['ContentLength']}), not read")
            return body.read()

    def size(self, uri: str) -> int:
        _, bucket, key = split_s3_uri(uri)
        with self._errors(uri, bucket):
            return int(self._client.head_object(Bucket=bucket, Key=key)["ContentLength"])

    def write_bytes(self, uri: str, data: bytes) -> None:
        # A single PUT: S3 makes the object visible whole or not at all.
        _, bucket, key = split_s3_uri(uri)
        with self._errors(uri, bucket):
            self._client.put_object(Bucket=bucket, Key=key, Body=data)

    def list_objects(self, prefix_uri: str) -> list[tuple[str, float]]:
        return sorted((uri, item["LastModified"].timestamp()) for uri, item, _ in self._objects(prefix_uri))

    def delete_files(self, uris: list[str]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for uri in uris:
            _, bucket, key = split_s3_uri(uri)
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            with self._errors(f"s3://{bucket}", bucket):
                for start in range(0, len(keys), DELETE_BATCH):
                    batch = keys[start:start + DELETE_BATCH]
                    response = self._client.delete_objects(
                        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                    )
                    if response.get("Errors"):
                        first = response["Errors"][0]
                        phrase = describe_s3_code(first.get("Code", ""), bucket, first.get("Message", ""))
                        raise StorageError(f"s3://{bucket}/{first.get('Key')}: cannot delete: {phrase}")

    def prepare_directory(self, uri: str) -> None:
        """Nothing to do: S3 has no folders, a key's prefix is enough."""
