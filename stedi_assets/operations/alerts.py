"""Alerts: one notification per failure, to an HTTP webhook and/or by email.

An :class:`Alert` names what failed (asset, check, run, sensor) and links to
the run in the UI; it never carries data of the tables (no check metadata, no
error messages, which could quote a record), so it holds no personal data.

The :class:`StediAlerts` resource delivers it to every configured channel:

* a webhook: a JSON POST with a ``text`` field, the body Slack's incoming
  webhooks accept (and any service that reads JSON);
* email over SMTP (``smtp://user:password@host:port``; ``smtps://`` for TLS
  from the start; STARTTLS is used when the server offers it).

A delivery that fails is retried with a growing delay, then logged; it never
raises, so a broken alert channel can never fail a run or a sensor tick.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage

from dagster import AssetCheckSeverity, ConfigurableResource
from pydantic import Field

from stedi_assets.settings import (
    ALERT_SEVERITIES,
    DEFAULT_EMAIL_FROM,
    DEFAULT_UI_URL,
    SettingsError,
    SmtpServer,
    smtp_server,
)

SEVERITIES = ALERT_SEVERITIES

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
    if minimum not in SEVERITIES:
        raise SettingsError(f"alerts.config.min_severity={minimum!r} is not valid: expected one of {', '.join(SEVERITIES)}")
    return SEVERITIES.index(severity.value) >= SEVERITIES.index(minimum)


class StediAlerts(ConfigurableResource):
    """Where alerts go; every channel is optional."""

    webhook_url: str = Field(default="", description="HTTP(S) URL to POST each alert to as JSON ({'text': ...}).")
    email_to: str = Field(default="", description="Comma-separated addresses to email each alert to (needs smtp_url).")
    email_from: str = Field(default=DEFAULT_EMAIL_FROM, description="Sender address of alert emails.")
    smtp_url: str = Field(default="", description="smtp://user:password@host:port (secret: set as an EnvVar).")
    min_severity: str = Field(default="WARN", description="Failed checks of this severity or higher alert: WARN or ERROR.")
    ui_url: str = Field(default=DEFAULT_UI_URL, description="Base URL of the Dagster UI, for links to runs.")
    attempts: int = Field(default=3, ge=1, description="Delivery attempts per channel.")
    retry_delay_seconds: float = Field(default=1.0, ge=0.0, description="Delay before the first retry; doubles after.")
    timeout_seconds: float = Field(default=10.0, gt=0.0, description="Network timeout of one delivery attempt.")

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
        for attempt in range(1, self.attempts + 1):
            try:
                deliver(alert)
                log.info(f"alert sent by {channel}: {alert.subject}")
                return True
            except Exception as error:  # any failure of the channel: log, retry, never raise
                log.warning(
                    f"alert delivery by {channel} failed (attempt {attempt} of {self.attempts}): {_describe(error)}"
                )
                if attempt < self.attempts:
                    time.sleep(delay)
                    delay *= 2
        log.error(f"alert not delivered by {channel} after {self.attempts} attempts: {alert.subject}")
        return False

    def _post(self, alert: Alert) -> None:
        request = urllib.request.Request(
            self.webhook_url,
            data=json.dumps(alert.webhook_body()).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
            response.read()

    def _email(self, alert: Alert) -> None:
        if not self.smtp_url:
            raise ValueError("STEDI_ALERT_EMAIL_TO is set but STEDI_SMTP_URL is not")
        server = parse_smtp_url(self.smtp_url)
        message = EmailMessage()
        message["Subject"] = f"[STEDI] {alert.subject}"
        message["From"] = self.email_from
        message["To"] = ", ".join(a.strip() for a in self.email_to.split(",") if a.strip())
        message.set_content(alert.text())
        smtp_class = smtplib.SMTP_SSL if server.implicit_tls else smtplib.SMTP
        with smtp_class(server.host, server.port, timeout=self.timeout_seconds) as smtp:
            smtp.ehlo()
            if not server.implicit_tls and smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if server.user:
                smtp.login(server.user, server.password or "")
            smtp.send_message(message)


def _describe(error: Exception) -> str:
    # The class and the status or reason only: an SMTP reply or an exception
    # text could repeat the server URL with its password.
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        return f"URLError ({type(error.reason).__name__})"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{type(error).__name__} (SMTP {error.smtp_code})"
    return type(error).__name__
