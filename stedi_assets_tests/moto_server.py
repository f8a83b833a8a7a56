"""A local AWS (moto) server on 127.0.0.1 for the query and catalog tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a moto server on an ephemeral port, fresh for each module."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
