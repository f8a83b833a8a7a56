"""A local S3 server (moto) on 127.0.0.1 for the S3 tests, and a fresh bucket per test.

The server runs for the whole session on an ephemeral port; each test gets
its own bucket and an environment holding only the standard AWS variables
that point at the server, as a deployment against MinIO or LocalStack would.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

# Credentials for the local server only; distinctive so tests can look for leaks.
ACCESS_KEY_ID = "AKIASTEDITESTKEY0001"
SECRET_ACCESS_KEY = "stedi-test-secret-3c9f1e7a-never-logged"
REGION = "us-east-1"


class LocalS3Server:
    """moto's S3 on 127.0.0.1; stopping and starting again keeps the port and the objects."""

    def __init__(self) -> None:
        self.port = 0
        self._server: ThreadedMotoServer | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # moto keeps its buckets in process memory, not in the server, so a
        # server started again on the same port serves the same objects.
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]

    def stop(self) -> None:
        assert self._server is not None
        self._server.stop()
        # stop() only leaves the serving loop; close the socket too, so that
        # clients get "connection refused" and the port can be bound again.
        self._server._server.server_close()
        self._server = None


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3Server]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = LocalS3Server()
    server.start()
    yield server
    if server.running:
        server.stop()


def aws_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp_path: Path) -> None:
    """Only the standard AWS variables, pointing at ``endpoint``; no profile or file from this machine."""
    for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS", "AWS_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)


@dataclass
class Bucket:
    name: str
    client: Any

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.name}", *parts])

    def keys(self, prefix: str = "") -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        return sorted(o["Key"] for page in paginator.paginate(Bucket=self.name, Prefix=prefix) for o in page.get("Contents", ()))

    def put_many(self, objects: dict[str, bytes]) -> None:
        # In parallel: the local server answers one PUT in about 10 ms.
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda item: self.client.put_object(Bucket=self.name, Key=item[0], Body=item[1]), objects.items()))

    def upload(self, local: Path, prefix: str) -> int:
        """Every file under ``local``, at the same relative path under ``prefix``; how many."""
        files = [p for p in sorted(local.rglob("*")) if p.is_file()]
        self.put_many({f"{prefix}/{path.relative_to(local).as_posix()}": path.read_bytes() for path in files})
        return len(files)


@pytest.fixture
def s3_bucket(s3_server: LocalS3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Bucket:
    """An empty bucket of its own on the local server, with the AWS environment set for it."""
    aws_environment(monkeypatch, s3_server.endpoint, tmp_path)
    client = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name=REGION,
                          aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)
    name = f"stedi-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return Bucket(name, client)


def independent_glue_catalog(endpoint: str):
    """A pyiceberg GlueCatalog of its own on the local server, as another team's reader would open it."""
    from pyiceberg.catalog.glue import GlueCatalog

    return GlueCatalog(
        "reader",
        **{
            "glue.endpoint": endpoint, "glue.region": REGION,
            "glue.access-key-id": ACCESS_KEY_ID, "glue.secret-access-key": SECRET_ACCESS_KEY,
            "s3.endpoint": endpoint, "s3.region": REGION,
            "s3.access-key-id": ACCESS_KEY_ID, "s3.secret-access-key": SECRET_ACCESS_KEY,
        },
    )
