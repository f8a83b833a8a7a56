"""Fixtures of the operations tests: a simulated landing zone and a lakehouse published from it."""

from __future__ import annotations

import email
import email.policy
import http.server
import json
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import narwhals as nw
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from dagster import AssetsDefinition, DagsterInstance, asset, build_sensor_context, materialize

from stedi_assets.orchestration.alerts import StediAlerts
from stedi_assets.orchestration.sensors import build_run_alert_sensors
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.domain.schemas import TABLES
from stedi_assets.domain.simulate import simulate_landing, write_landing
from stedi_assets_tests.conftest import materialize_all, resources_for


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """A Dagster instance of its own, in the test's temporary folder."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.local_temp(tempdir=str(home)) as instance:
        yield instance


@pytest.fixture(scope="module")
def published_lakehouse(tmp_path_factory) -> Lakehouse:
    """Every table published from the simulated landing zone, once per module; do not modify it."""
    root = tmp_path_factory.mktemp("published")
    write_landing(root / "landing", simulate_landing())
    lakehouse = Lakehouse(landing_uri=str(root / "landing"), lakehouse_uri=str(root / "lakehouse"))
    assert materialize_all(lakehouse).success
    return lakehouse


@pytest.fixture(scope="module")
def published_frames(published_lakehouse: Lakehouse) -> dict[str, nw.LazyFrame]:
    """Every table of the published lakehouse (zone and quarantine tables), held in memory."""
    return {table: published_lakehouse.read_table([table]).collect().lazy() for table in TABLES}


def stand_in(table: str, frame: nw.LazyFrame) -> AssetsDefinition:
    """An asset with the table's key that returns ``frame``: publishing it is what a writer outside the pipeline does."""

    @asset(name=table)
    def published() -> nw.LazyFrame:
        return frame

    return published


def publish_tables(lakehouse: Lakehouse, frames: dict[str, nw.LazyFrame]) -> None:
    """Publish ``frames`` as the tables of ``lakehouse`` through its IO manager, whatever they contain."""
    result = materialize([stand_in(t, f) for t, f in frames.items()], resources=resources_for(lakehouse))
    assert result.success


@pytest.fixture
def publish(published_frames, tmp_path: Path) -> Callable[..., Lakehouse]:
    """A new lakehouse with the published tables, some replaced: ``publish(customer_trusted=frame)``."""

    def make(**replaced: nw.LazyFrame | None) -> Lakehouse:
        lakehouse = Lakehouse(landing_uri=str(tmp_path / "landing"), lakehouse_uri=str(tmp_path / "lakehouse"))
        frames = {**published_frames, **replaced}
        publish_tables(lakehouse, {t: f for t, f in frames.items() if f is not None})
        return lakehouse

    return make


class CheckAlerts:
    """check_failure_alert_sensor evaluated tick by tick, carrying its cursor as the daemon does."""

    def __init__(self, instance: DagsterInstance, alerts: StediAlerts):
        self.sensor = next(s for s in build_run_alert_sensors(15) if s.name == "check_failure_alert_sensor")
        self.instance, self.alerts = instance, alerts
        self.cursor: str | None = None
        # The first tick: the runs before it are history.
        self.tick()

    def tick(self):
        with build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"alerts": self.alerts}
        ) as context:
            result = self.sensor(context)
            self.cursor = context.cursor
        return result


# -- real alert receivers on loopback -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every POSTed JSON body.

    ``fail_next`` makes the next requests answer 500, to exercise retries.
    """

    def __init__(self):
        self.bodies: list[dict] = []
        self.fail_next = 0
        self.attempts = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                receiver.attempts += 1
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/stedi"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def texts(self) -> list[str]:
        return [body["text"] for body in self.bodies]


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


SMTP_USER, SMTP_PASSWORD = "stedi", "s3cret:pass"


class MailReceiver:
    """An SMTP server (aiosmtpd) on 127.0.0.1 that requires a login and records every message."""

    def __init__(self):
        self.messages: list[email.message.Message] = []
        self.logins: list[str] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
                SMTP_USER.encode(), SMTP_PASSWORD.encode()
            )
            if ok:
                receiver.logins.append(auth_data.login.decode())
            return AuthResult(success=ok)

        self.port = free_port()
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticator,
            auth_require_tls=False, auth_required=True,
        )
        self.url = f"smtp://{SMTP_USER}:{quote(SMTP_PASSWORD, safe='')}@127.0.0.1:{self.port}"


@pytest.fixture
def mailbox() -> Iterator[MailReceiver]:
    receiver = MailReceiver()
    with warnings.catch_warnings():
        # Login without TLS is what the test wants: a plain server on loopback.
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
        receiver.controller.start()
    try:
        yield receiver
    finally:
        receiver.controller.stop()


class DrippingServer:
    """A TCP server on 127.0.0.1 that answers every connection one byte at a time, ``interval`` seconds apart.

    As ``http``: it reads the request, sends a 200 status line and headers
    announcing a long body, then drips the body. As ``smtp``: it drips its
    greeting. Either way each byte arrives well within a per-read socket
    timeout, so only a deadline on the whole attempt ends the client's wait.
    """

    def __init__(self, protocol: str, interval: float):
        self.protocol, self.interval = protocol, interval
        self.connections = 0
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:  # the listener was closed
                return
            self.connections += 1
            thread = threading.Thread(target=self._answer, args=(connection,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _answer(self, connection: socket.socket):
        with connection:
            try:
                if self.protocol == "http":
                    received = b""
                    while b"\r\n\r\n" not in received:
                        received += connection.recv(65536)
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
                    drip = b"o" * 100000
                else:
                    drip = b"220 slow.example.org ESMTP\r\n"
                for byte in drip:
                    if self.stopped.wait(self.interval):
                        return
                    connection.sendall(bytes([byte]))
            except OSError:  # the client gave up
                return

    def stop(self):
        self.stopped.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.fixture
def dripping() -> Iterator[Callable[[str], DrippingServer]]:
    """``dripping("http")`` or ``dripping("smtp")``: a started DrippingServer, one byte a second."""
    servers: list[DrippingServer] = []

    def start(protocol: str) -> DrippingServer:
        server = DrippingServer(protocol, interval=1.0)
        server.thread.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
