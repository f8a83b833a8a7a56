"""Alerts: one notification per failure, to an HTTP webhook and/or by email.

An :class:`Alert` names what failed (asset, check, run, sensor) and links to
the run in the UI; it never carries data of the tables (no check metadata, no
error messages, which could quote a record), so it holds no personal data.

The :class:`StediAlerts` resource delivers it to every configured channel:

* a webhook: a JSON POST with a ``text`` field, the body Slack's incoming
  webhooks accept (and any service that reads JSON);
* email over SMTP (``smtp://user:password@host:port``; ``smtps://`` for TLS
  from the start; STARTTLS is used when the server offers it).

Every delivery is bounded in time. One attempt (connect, send, read the
answer) has a deadline, ``timeout_seconds``, whatever the server does: a
socket timeout alone bounds each wait, not the attempt, and a server that
answers one byte every few seconds would never reach it. An attempt that fails
is retried with a growing delay, then logged; the longest one alert can take on
one channel is :attr:`StediAlerts.longest_delivery_seconds` (33 s with the
defaults: 3 attempts of at most 10 s, 1 s and 2 s apart). Delivery never
raises, so a broken alert channel can never fail a run or a sensor tick.
"""

from __future__ import annotations

import http.client
import json
import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import urlsplit

from dagster import AssetCheckSeverity, ConfigurableResource, InitResourceContext
from pydantic import Field

from stedi_assets.settings import (
    SETTING_OF_FIELD,
    AlertSeverity,
    SettingsError,
    SmtpServer,
    check_alert_fields,
    resource_field,
    smtp_server,
)

SEVERITIES = tuple(AlertSeverity)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    """One failure, described by names and ids only."""

    subject: str
    """One line: what failed, e.g. ``check failed: customer_trusted.audit_consenting_customers_only``."""
    details: dict[str, str] = field(default_factory=dict)
    """Names and ids: asset, check, severity, run id, job, sensor..."""
    link: str | None = None
    """The run (or sensor) in the UI."""

    def text(self) -> str:
        lines = [f"[STEDI] {self.subject}"]
        lines += [f"{name}: {value}" for name, value in self.details.items()]
        if self.link:
            lines.append(f"link: {self.link}")
        return "\n".join(lines)

    def webhook_body(self) -> dict[str, str]:
        return {"text": self.text()}


def parse_smtp_url(url: str) -> SmtpServer:
    """``smtp://user:password@host:port`` (or ``smtps://``) as its parts; the error never shows the URL."""
    return smtp_server(url)


def severity_at_least(severity: AssetCheckSeverity, minimum: str) -> bool:
    """Whether a failed check of ``severity`` is worth an alert under the ``minimum`` setting."""
    minimum = SETTING_OF_FIELD["alert_min_severity"].check("alerts.config.min_severity", minimum)
    return SEVERITIES.index(severity.value) >= SEVERITIES.index(minimum)


class StediAlerts(ConfigurableResource):
    """Where alerts go; every channel is optional."""

    # The fields set by settings take their defaults and descriptions from settings.Settings
    # (test_settings checks the names); attempts and delays are this resource's own.
    webhook_url: str = resource_field("alert_webhook_url")
    email_to: str = resource_field("alert_email_to")
    email_from: str = resource_field("alert_email_from")
    smtp_url: str = resource_field("smtp_url")
    min_severity: str = resource_field("alert_min_severity")
    ui_url: str = resource_field("ui_url")
    attempts: int = Field(default=3, ge=1, le=10, description="Delivery attempts per channel.")
    retry_delay_seconds: float = Field(
        default=1.0, ge=0.0, le=60.0, description="Delay before the first retry; doubles after."
    )
    timeout_seconds: float = resource_field("alert_timeout_seconds", gt=0.0)
    remind_hours: int = resource_field("alert_remind_hours", ge=0)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Launchpad config gets the environment's checks (a file:// webhook is
        # refused here, with the field's name, before any alert is sent).
        check_alert_fields(dict(self))

    @property
    def longest_delivery_seconds(self) -> float:
        """The longest one alert can take on one channel: every attempt at its deadline, and the delays between."""
        delays = sum(self.retry_delay_seconds * 2**n for n in range(self.attempts - 1))
        return self.attempts * self.timeout_seconds + delays

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}"

    def ui_link(self, path: str) -> str:
        return f"{self.ui_url.rstrip('/')}/{path.lstrip('/')}"

    @property
    def channels(self) -> list[str]:
        channels = []
        if self.webhook_url:
            channels.append("webhook")
        if self.email_to:
            channels.append("email")
        return channels

    def should_alert_check(self, severity: AssetCheckSeverity) -> bool:
        return severity_at_least(severity, self.min_severity)

    def send(
        self, alert: Alert, log: logging.Logger | None = None, skip: frozenset[str] = frozenset()
    ) -> dict[str, bool]:
        """Deliver ``alert`` to every configured channel but ``skip``; ``{channel: delivered}``. Never raises."""
        log = log or _log
        try:
            # Also here: a resource built in code has not been through setup_for_execution.
            check_alert_fields(dict(self))
        except SettingsError as error:
            log.error(f"alert not sent: {error}: {alert.subject}")
            return {channel: False for channel in self.channels}
        if not self.channels:
            log.info(f"alert not sent (no channel configured: STEDI_ALERT_WEBHOOK_URL, STEDI_ALERT_EMAIL_TO): {alert.subject}")
        outcome = {}
        for channel in self.channels:
            if channel in skip:
                log.error(f"alert not sent by {channel}, which failed earlier in this batch: {alert.subject}")
                outcome[channel] = False
                continue
            deliver = self._post if channel == "webhook" else self._email
            outcome[channel] = self._with_retries(channel, deliver, alert, log)
        return outcome

    def send_all(self, alerts: list[Alert], log: logging.Logger | None = None) -> list[dict[str, bool]]:
        """Deliver each alert; a channel that failed every attempt is not tried again in this batch.

        A sensor tick has a time limit: a dead channel must not spend it on
        retries for every alert of a run with many failed checks.
        """
        dead: set[str] = set()
        outcomes = []
        for alert in alerts:
            outcome = self.send(alert, log, skip=frozenset(dead))
            dead |= {channel for channel, delivered in outcome.items() if not delivered}
            outcomes.append(outcome)
        return outcomes

    def _with_retries(self, channel: str, deliver, alert: Alert, log: logging.Logger) -> bool:
        delay = self.retry_delay_seconds
        for number in range(1, self.attempts + 1):
            try:
                _Attempt(self.timeout_seconds).run(lambda attempt: deliver(alert, attempt))
                log.info(f"alert sent by {channel}: {alert.subject}")
                return True
            except Exception as error:  # any failure of the channel: log, retry, never raise
                log.warning(
                    f"alert delivery by {channel} failed (attempt {number} of {self.attempts}): {_describe(error)}"
                )
                if number < self.attempts:
                    time.sleep(delay)
                    delay *= 2
        log.error(f"alert not delivered by {channel} after {self.attempts} attempts: {alert.subject}")
        return False

    def _post(self, alert: Alert, attempt: _Attempt) -> None:
        # http.client rather than urllib: the attempt needs the connection's
        # socket to end it at its deadline, and urllib would also open file:// URLs.
        url = urlsplit(self.webhook_url)
        if url.scheme == "https":
            connection = http.client.HTTPSConnection(url.hostname, url.port, timeout=self.timeout_seconds)
        elif url.scheme == "http":
            connection = http.client.HTTPConnection(url.hostname, url.port, timeout=self.timeout_seconds)
        else:
            raise ValueError("the webhook URL is not http:// or https://")
        attempt.watch(lambda: connection.sock)
        try:
            target = (url.path or "/") + (f"?{url.query}" if url.query else "")
            body = json.dumps(alert.webhook_body()).encode()
            connection.request("POST", target, body=body, headers={"Content-Type": "application/json"})
            attempt.check()
            response = connection.getresponse()
            while response.read(8192):
                attempt.check()
            if not 200 <= response.status < 300:
                raise WebhookRefused(response.status)
        finally:
            connection.close()

    def _email(self, alert: Alert, attempt: _Attempt) -> None:
        if not self.smtp_url:
            raise ValueError("STEDI_ALERT_EMAIL_TO is set but STEDI_SMTP_URL is not")
        server = parse_smtp_url(self.smtp_url)
        message = EmailMessage()
        message["Subject"] = f"[STEDI] {alert.subject}"
        message["From"] = self.email_from
        message["To"] = ", ".join(a.strip() for a in self.email_to.split(",") if a.strip())
        message.set_content(alert.text())
        if server.implicit_tls:
            smtp = smtplib.SMTP_SSL(timeout=self.timeout_seconds)
        else:
            smtp = smtplib.SMTP(timeout=self.timeout_seconds)
        # The current socket, read at the deadline: STARTTLS replaces it.
        attempt.watch(lambda: smtp.sock)
        try:
            smtp.connect(server.host, server.port)
            attempt.check()
            smtp.ehlo()
            if not server.implicit_tls and smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            attempt.check()
            if server.user:
                smtp.login(server.user, server.password or "")
            smtp.send_message(message)
            smtp.quit()
        finally:
            smtp.close()


class WebhookRefused(Exception):
    """The webhook answered with a status other than 2xx."""

    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


class DeadlineExceeded(Exception):
    """A delivery attempt did not finish within its deadline."""

    def __init__(self, seconds: float):
        super().__init__(f"no answer within {seconds:g} s")
        self.seconds = seconds


class _Attempt:
    """One delivery attempt, on a thread of its own, given up at its deadline.

    The caller waits for the thread at most ``seconds``. At the deadline the
    attempt's connection is shut down, which ends any read or write the thread
    is blocked in, so the thread finishes at once rather than lingering on a
    server that is still dripping bytes; ``check()`` between steps stops it
    from starting anything new. (Only a name lookup cannot be interrupted: the
    thread is a daemon, and the lookup has its own timeout.)
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._socket: Callable[[], socket.socket | None] = lambda: None
        self._given_up = threading.Event()
        self._error: BaseException | None = None

    def watch(self, current_socket: Callable[[], socket.socket | None]) -> None:
        """``current_socket()`` is the connection to shut down at the deadline."""
        self._socket = current_socket

    def check(self) -> None:
        if self._given_up.is_set():
            raise DeadlineExceeded(self.seconds)

    def run(self, work: Callable[[_Attempt], None]) -> None:
        """``work(self)``, raising what it raised, or :class:`DeadlineExceeded` after ``seconds``."""
        thread = threading.Thread(target=self._work, args=(work,), name="stedi-alert-delivery", daemon=True)
        thread.start()
        thread.join(self.seconds)
        if thread.is_alive():
            self._given_up.set()
            connection = self._socket()
            if connection is not None:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed, or never connected
                    pass
            raise DeadlineExceeded(self.seconds)
        if self._error is not None:
            raise self._error

    def _work(self, work: Callable[[_Attempt], None]) -> None:
        try:
            work(self)
        except BaseException as error:  # handed to the caller, which logs it
            self._error = error


def _describe(error: Exception) -> str:
    # The class and the status or reason only: an SMTP reply or an exception
    # text could repeat the server URL with its password.
    if isinstance(error, (WebhookRefused, DeadlineExceeded)):
        return str(error)
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{type(error).__name__} (SMTP {error.smtp_code})"
    return type(error).__name__
