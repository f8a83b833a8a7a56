"""Alerts: delivery to a real webhook and a real SMTP server on loopback, and the run alert sensors.

The notifier is exercised against an HTTP server and an aiosmtpd server on
127.0.0.1 (retries, undeliverable alerts, secrets kept out of logs); the run
alert sensors against real runs recorded in a Dagster instance. The sensors
are invoked directly here; under the daemon see test_daemon.py.
"""

from __future__ import annotations

import logging

import pytest
from dagster import DagsterEventType, DagsterInstance, Definitions, build_run_status_sensor_context

from stedi_assets.definitions import stedi_audit_job, stedi_job, zone_assets
from stedi_assets.operations.alerts import Alert, StediAlerts, parse_smtp_url
from stedi_assets.operations.audit import AUDIT_CHECKS
from stedi_assets.operations.sensors import build_run_alert_sensors
from stedi_assets.resources import StediLakehouse
from stedi_assets_tests.conftest import resources_for
from stedi_assets_tests.operations.conftest import SMTP_PASSWORD, free_port

# The loopback SMTP server takes a login without TLS, which aiosmtpd warns about on each connection.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

UI = "http://dagster.example.internal:3000"
ALERT = Alert(
    subject="check failed: customer_trusted audit_consenting_customers_only (ERROR)",
    details={"asset": "customer_trusted", "check": "audit_consenting_customers_only", "run_id": "abc123"},
    link=f"{UI}/runs/abc123",
)


def quick(**fields) -> StediAlerts:
    return StediAlerts(ui_url=UI, retry_delay_seconds=0.01, timeout_seconds=2, **fields)


# -- channels ------------------------------------------------------------------------------


def test_webhook_receives_one_json_post_with_a_slack_text(webhook):
    assert quick(webhook_url=webhook.url).send(ALERT) == {"webhook": True}
    assert webhook.bodies == [{"text": ALERT.text()}]
    text = webhook.texts[0]
    assert text.startswith("[STEDI] check failed: customer_trusted")
    assert f"link: {UI}/runs/abc123" in text and "run_id: abc123" in text


def test_email_is_sent_over_smtp_with_the_login_of_the_url(mailbox):
    alerts = quick(email_to="ops@example.org, oncall@example.org", smtp_url=mailbox.url)
    assert alerts.send(ALERT) == {"email": True}
    assert mailbox.logins == ["stedi"]
    [message] = mailbox.messages
    assert message["Subject"] == f"[STEDI] {ALERT.subject}"
    assert message["To"] == "ops@example.org, oncall@example.org"
    assert f"{UI}/runs/abc123" in message.get_content()


def test_both_channels_each_get_the_alert(webhook, mailbox):
    alerts = quick(webhook_url=webhook.url, email_to="ops@example.org", smtp_url=mailbox.url)
    assert alerts.send(ALERT) == {"webhook": True, "email": True}
    assert len(webhook.bodies) == 1 and len(mailbox.messages) == 1


def test_a_failing_webhook_is_retried_until_it_answers(webhook, caplog):
    webhook.fail_next = 2
    with caplog.at_level(logging.INFO):
        assert quick(webhook_url=webhook.url).send(ALERT) == {"webhook": True}
    assert webhook.attempts == 3 and len(webhook.bodies) == 1
    assert "attempt 1 of 3" in caplog.text and "HTTP 500" in caplog.text


def test_a_dead_channel_is_not_retried_for_every_alert_of_a_batch(webhook, mailbox, caplog):
    webhook.fail_next = 1_000
    alerts = quick(webhook_url=webhook.url, email_to="ops@example.org", smtp_url=mailbox.url)
    with caplog.at_level(logging.INFO):
        outcomes = alerts.send_all([ALERT, ALERT, ALERT])
    assert outcomes == [{"webhook": False, "email": True}] * 3
    # Three attempts for the first alert, none for the next two; email delivered all three.
    assert webhook.attempts == 3 and len(mailbox.messages) == 3
    assert caplog.text.count("alert not sent by webhook, which failed earlier in this batch") == 2


def test_an_undeliverable_alert_is_logged_and_never_raised(caplog):
    closed = free_port()
    alerts = quick(
        webhook_url=f"http://127.0.0.1:{closed}/hook",
        email_to="ops@example.org",
        smtp_url=f"smtp://stedi:{SMTP_PASSWORD}@127.0.0.1:{closed}",
    )
    with caplog.at_level(logging.INFO):
        assert alerts.send(ALERT) == {"webhook": False, "email": False}
    assert "alert not delivered by webhook after 3 attempts" in caplog.text
    assert "alert not delivered by email after 3 attempts" in caplog.text
    assert SMTP_PASSWORD not in caplog.text


def test_a_rejected_smtp_login_is_logged_without_the_password(mailbox, caplog):
    wrong = mailbox.url.replace("s3cret", "wrong")
    with caplog.at_level(logging.INFO):
        assert quick(email_to="ops@example.org", smtp_url=wrong).send(ALERT) == {"email": False}
    assert not mailbox.messages
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("stedi_assets"))
    assert "alert not delivered by email after 3 attempts" in ours and "wrong" not in ours


def test_no_channel_configured_only_logs(caplog):
    with caplog.at_level(logging.INFO):
        assert quick().send(ALERT) == {}
    assert "no channel configured" in caplog.text


def test_smtp_url_parsing_and_errors_without_the_url():
    server = parse_smtp_url("smtp://me%40corp:p%3Ass@mail.example.org:2525")
    assert (server.host, server.port, server.user, server.password, server.implicit_tls) == (
        "mail.example.org", 2525, "me@corp", "p:ss", False,
    )
    assert parse_smtp_url("smtps://mail.example.org").port == 465
    with pytest.raises(ValueError, match="^STEDI_SMTP_URL=<hidden> is not valid: expected") as error:
        parse_smtp_url("http://user:hunter2@mail.example.org")
    assert "hunter2" not in str(error.value)


# -- alert sensors on real runs ------------------------------------------------------------------


def run_job(lakehouse: StediLakehouse, job, instance: DagsterInstance):
    defs = Definitions(assets=zone_assets, asset_checks=AUDIT_CHECKS, jobs=[job], resources=resources_for(lakehouse))
    return defs.resolve_job_def(job.name).execute_in_process(instance=instance, raise_on_error=False)


def evaluate_run_sensor(name: str, instance: DagsterInstance, run_id: str, event_type, alerts: StediAlerts) -> None:
    sensor = next(s for s in build_run_alert_sensors(15) if s.name == name)
    run = instance.get_run_by_id(run_id)
    event = instance.get_records_for_run(run_id, of_type=event_type).records[-1].event_log_entry.dagster_event
    context = build_run_status_sensor_context(name, event, instance, run, resources={"alerts": alerts})
    if event_type == DagsterEventType.RUN_FAILURE:
        context = context.for_run_failure()
    sensor(context)


def test_a_failed_audit_in_a_green_run_alerts_once_per_failed_check(publish, published_frames, webhook):
    # Every landed reading, consenting or not, published as accelerometer_trusted.
    lakehouse = publish(accelerometer_trusted=published_frames["accelerometer_landing"])
    with DagsterInstance.ephemeral() as instance:
        result = run_job(lakehouse, stedi_audit_job, instance)
        assert result.success  # the failed check does not fail the run
        evaluate_run_sensor(
            "check_failure_alert_sensor", instance, result.run_id, DagsterEventType.RUN_SUCCESS,
            quick(webhook_url=webhook.url),
        )
    [text] = webhook.texts
    assert "check failed: accelerometer_trusted audit_consenting_readings_only (ERROR)" in text
    assert f"run_id: {result.run_id}" in text and f"link: {UI}/runs/{result.run_id}" in text
    assert "job: stedi_audit_job" in text
    # Names and ids only: no email of a reading's user, masked or not.
    assert "@" not in text


@pytest.mark.parametrize(("minimum", "alerted"), [("WARN", True), ("ERROR", False)])
def test_a_failed_warn_check_alerts_unless_the_minimum_is_error(tmp_path, minimum, alerted, webhook):
    # The simulated data pairs readings of different customers: cross_customer_pairs fails as a WARN.
    from stedi_assets.simulate import simulate_landing, write_landing

    write_landing(tmp_path / "landing", simulate_landing())
    lakehouse = StediLakehouse(landing_uri=str(tmp_path / "landing"), lakehouse_uri=str(tmp_path / "lake"))
    with DagsterInstance.ephemeral() as instance:
        result = run_job(lakehouse, stedi_job, instance)
        assert result.success
        evaluate_run_sensor(
            "check_failure_alert_sensor", instance, result.run_id, DagsterEventType.RUN_SUCCESS,
            quick(webhook_url=webhook.url, min_severity=minimum),
        )
    if alerted:
        [text] = webhook.texts
        assert "check failed: machine_learning_curated cross_customer_pairs (WARN)" in text
    else:
        assert webhook.texts == []


def test_a_failed_run_alerts_with_its_failed_step(tmp_path, webhook, mailbox):
    # No landing files: the landing steps fail with the reader's error.
    lakehouse = StediLakehouse(landing_uri=str(tmp_path / "empty"), lakehouse_uri=str(tmp_path / "lake"))
    alerts = quick(webhook_url=webhook.url, email_to="ops@example.org", smtp_url=mailbox.url)
    with DagsterInstance.ephemeral() as instance:
        result = run_job(lakehouse, stedi_job, instance)
        assert not result.success
        evaluate_run_sensor("run_failure_alert_sensor", instance, result.run_id, DagsterEventType.RUN_FAILURE, alerts)
    [text] = webhook.texts
    assert text.startswith("[STEDI] run failed: stedi_job")
    assert "customer_landing" in text and f"{UI}/runs/{result.run_id}" in text
    # The error's message names the landing folder; only its class is sent.
    assert str(tmp_path) not in text
    [message] = mailbox.messages
    assert message["Subject"] == "[STEDI] run failed: stedi_job"
