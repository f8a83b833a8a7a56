"""Alerts: delivery to a real webhook and a real SMTP server on loopback, and the run alert sensors.

The notifier is exercised against an HTTP server and an aiosmtpd server on
127.0.0.1 (retries, undeliverable alerts, secrets kept out of logs); the run
alert sensors against real runs recorded in a Dagster instance, tick by tick
with their cursors (alerts on a check's changes, not on every run, and
reminders). The sensors are invoked directly here; under the daemon see
test_daemon.py.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from dagster import DagsterEventType, DagsterInstance, Definitions, build_run_status_sensor_context

from stedi_assets.definitions import stedi_audit_job, stedi_job, zone_assets
from stedi_assets.orchestration.feeds import landing_feeds
from stedi_assets.orchestration.alerts import Alert, StediAlerts, parse_smtp_url
from stedi_assets.orchestration.audit import AUDIT_CHECKS
from stedi_assets.orchestration.sensors import build_run_alert_sensors
from stedi_assets.orchestration.tags import run_origin
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.orchestration.resources import build_resources
from stedi_assets.settings import SettingsError
from stedi_assets_tests.conftest import resources_for
from stedi_assets_tests.orchestration.conftest import SMTP_PASSWORD, CheckAlerts, free_port, publish_tables

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


# -- every delivery bounded in time ---------------------------------------------------------------


def delivery_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "stedi-alert-delivery"]


def wait_for_no_delivery_threads(seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while delivery_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not delivery_threads(), "an abandoned delivery attempt is still running"


def test_a_webhook_that_drips_its_answer_is_given_up_at_the_deadline(dripping, caplog):
    server = dripping("http")
    # One byte a second never trips a per-read timeout of 3 s; only the attempt's deadline ends it.
    alerts = StediAlerts(
        webhook_url=f"http://127.0.0.1:{server.port}/hook", timeout_seconds=3, attempts=2, retry_delay_seconds=0.2
    )
    assert alerts.longest_delivery_seconds == pytest.approx(6.2)
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        assert alerts.send(ALERT) == {"webhook": False}
    elapsed = time.monotonic() - started
    assert 6.0 <= elapsed <= alerts.longest_delivery_seconds + 0.5
    assert server.connections == 2
    assert caplog.text.count("no answer within 3 s") == 2
    assert "alert not delivered by webhook after 2 attempts" in caplog.text
    # The abandoned attempts do not linger: their connections were shut down.
    wait_for_no_delivery_threads()


def test_an_smtp_server_that_drips_its_greeting_is_given_up_at_the_deadline(dripping, caplog):
    server = dripping("smtp")
    alerts = StediAlerts(
        email_to="ops@example.org", smtp_url=f"smtp://127.0.0.1:{server.port}", timeout_seconds=2.5, attempts=1
    )
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        assert alerts.send(ALERT) == {"email": False}
    assert 2.5 <= time.monotonic() - started <= alerts.longest_delivery_seconds + 0.5
    assert "no answer within 2.5 s" in caplog.text
    wait_for_no_delivery_threads()


def test_the_longest_delivery_with_the_defaults_is_33_seconds_per_channel():
    # What the README states: 3 attempts of at most 10 s, 1 s and 2 s apart.
    assert StediAlerts().longest_delivery_seconds == 33.0
    assert build_resources({"STEDI_ALERT_TIMEOUT_SECONDS": "2.5"})["alerts"].longest_delivery_seconds == 10.5


# -- the resource's own fields are validated ----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("webhook_url", "file:///etc/passwd", "'file:///etc/passwd'"),
        ("webhook_url", "ftp://host/hook", "'ftp://host/hook'"),
        ("email_to", "ops", "'ops'"),
        ("smtp_url", "http://u:hunter2@mail.example.org", "<hidden>"),
        ("min_severity", "INFO", "'INFO'"),
        ("timeout_seconds", 0.0, "0.0"),
        ("remind_hours", -1, "-1"),
    ],
)
def test_a_bad_field_set_on_the_resource_is_one_line_naming_it(field, value, shown, caplog):
    fields = {"email_to": "ops@example.org", "smtp_url": "smtp://mail.example.org", field: value}
    # Pydantic's own bounds would refuse some of these at construction; launchpad config arrives unchecked.
    alerts = StediAlerts.model_construct(**{**StediAlerts().model_dump(), **fields})
    with pytest.raises(SettingsError) as raised:
        alerts.setup_for_execution(None)
    message = str(raised.value)
    assert message.startswith(f"alerts.config.{field}={shown} is not valid: expected") and "\n" not in message
    assert "hunter2" not in message


def test_a_file_webhook_set_on_the_resource_is_refused_not_reported_sent(tmp_path, caplog):
    target = tmp_path / "alert.json"
    target.write_text("")
    alerts = StediAlerts(webhook_url=target.as_uri())
    with caplog.at_level(logging.INFO):
        assert alerts.send(ALERT) == {"webhook": False}
    assert f"alerts.config.webhook_url='{target.as_uri()}' is not valid: expected an http:// or https:// URL" in caplog.text
    assert "alert sent" not in caplog.text


def test_a_file_webhook_in_a_sensor_s_resource_config_fails_its_tick_with_one_line(instance):
    from dagster import DagsterResourceFunctionError, build_sensor_context

    from stedi_assets.definitions import build_definitions

    defs = build_definitions()
    sensor = defs.resolve_sensor_def("sensor_tick_alert_sensor")
    resources = {**defs.resources, "alerts": StediAlerts(webhook_url="file:///tmp/alerts.json")}
    with pytest.raises(DagsterResourceFunctionError) as raised:
        with build_sensor_context(
            instance=instance, definitions=defs, sensor_name=sensor.name, resources=resources
        ) as context:
            sensor(context)
    # The tick's error, as the Automation page shows it: Dagster's wrapper, caused by the one line.
    assert isinstance(raised.value.__cause__, SettingsError)
    assert str(raised.value.__cause__).startswith("alerts.config.webhook_url='file:///tmp/alerts.json' is not valid")


def test_email_to_without_an_smtp_url_on_the_resource_is_refused():
    with pytest.raises(SettingsError, match=r"^alerts\.config\.email_to is set but alerts\.config\.smtp_url is not"):
        StediAlerts(email_to="ops@example.org").setup_for_execution(None)


# -- alert sensors on real runs ------------------------------------------------------------------


def run_job(lakehouse: Lakehouse, job, instance: DagsterInstance):
    # stedi_job observes the feeds before their landing steps.
    defs = Definitions(
        assets=[landing_feeds, *zone_assets], asset_checks=AUDIT_CHECKS, jobs=[job], resources=resources_for(lakehouse)
    )
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
        sensor = CheckAlerts(instance, quick(webhook_url=webhook.url))
        result = run_job(lakehouse, stedi_audit_job, instance)
        assert result.success  # the failed check does not fail the run
        sensor.tick()
        sensor.tick()
    [text] = webhook.texts
    assert "check failed: accelerometer_trusted audit_consenting_readings_only (ERROR)" in text
    assert f"run_id: {result.run_id}" in text and f"link: {UI}/runs/{result.run_id}" in text
    assert "job: stedi_audit_job" in text and "trigger: manual" in text
    # Names and ids only: no email of a reading's user, masked or not.
    assert "@" not in text


def test_a_check_that_fails_twice_then_passes_alerts_twice_failed_then_recovered(publish, published_frames, webhook):
    lakehouse = publish(accelerometer_trusted=published_frames["accelerometer_landing"])
    with DagsterInstance.ephemeral() as instance:
        sensor = CheckAlerts(instance, quick(webhook_url=webhook.url))
        failing = [run_job(lakehouse, stedi_audit_job, instance) for _ in range(2)]
        sensor.tick()
        # The same failure in a later run, read by a later tick: still nothing new.
        failing.append(run_job(lakehouse, stedi_audit_job, instance))
        sensor.tick()
        publish_tables(lakehouse, {"accelerometer_trusted": published_frames["accelerometer_trusted"]})
        passing = run_job(lakehouse, stedi_audit_job, instance)
        sensor.tick()
        run_job(lakehouse, stedi_audit_job, instance)
        sensor.tick()
    assert all(r.success for r in failing) and passing.success
    failed, recovered = webhook.texts
    assert failed.startswith("[STEDI] check failed: accelerometer_trusted audit_consenting_readings_only (ERROR)")
    assert f"run_id: {failing[0].run_id}" in failed
    assert recovered.startswith(
        "[STEDI] recovered: check passed: accelerometer_trusted audit_consenting_readings_only (ERROR)"
    )
    assert f"run_id: {passing.run_id}" in recovered


def test_a_failure_is_reminded_every_remind_hours_while_it_stays_failing(publish, published_frames, webhook):
    lakehouse = publish(accelerometer_trusted=published_frames["accelerometer_landing"])
    with DagsterInstance.ephemeral() as instance:
        sensor = CheckAlerts(instance, quick(webhook_url=webhook.url, remind_hours=2))
        run_job(lakehouse, stedi_audit_job, instance)
        sensor.tick()
        sensor.tick()
        assert len(webhook.texts) == 1
        # The cursor is the sensor's whole memory: age its last alert by two hours, as time would.
        state = json.loads(sensor.cursor)
        condition = state["checks"]["accelerometer_trusted audit_consenting_readings_only"]
        condition["alerted_at"] -= 2 * 3600
        sensor.cursor = json.dumps(state)
        sensor.tick()
        sensor.tick()
    failed, reminder = webhook.texts
    assert reminder.startswith(
        "[STEDI] still failing: check failed: accelerometer_trusted audit_consenting_readings_only (ERROR)"
    )
    assert "since: " in reminder and "run_id: " in reminder


@pytest.mark.parametrize(("minimum", "alerted"), [("WARN", True), ("ERROR", False)])
def test_a_failed_warn_check_alerts_once_unless_the_minimum_is_error(tmp_path, minimum, alerted, webhook):
    # The simulated data pairs readings of different customers: cross_customer_pairs fails as a WARN, by design,
    # in every run.
    from stedi_assets.domain.simulate import simulate_landing, write_landing

    write_landing(tmp_path / "landing", simulate_landing())
    lakehouse = Lakehouse(landing_uri=str(tmp_path / "landing"), lakehouse_uri=str(tmp_path / "lake"))
    with DagsterInstance.ephemeral() as instance:
        sensor = CheckAlerts(instance, quick(webhook_url=webhook.url, min_severity=minimum))
        for _ in range(2):
            assert run_job(lakehouse, stedi_job, instance).success
            sensor.tick()
    if alerted:
        # Once, not once per run: it stays failing.
        [text] = webhook.texts
        assert "check failed: machine_learning_curated cross_customer_pairs (WARN)" in text
    else:
        assert webhook.texts == []


def test_a_failed_run_alerts_with_its_failed_step(tmp_path, webhook, mailbox):
    # No landing files: the landing steps fail with the reader's error.
    lakehouse = Lakehouse(landing_uri=str(tmp_path / "empty"), lakehouse_uri=str(tmp_path / "lake"))
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
    assert message["Subject"] == "[STEDI] run failed: stedi_job (manual)"


@pytest.mark.parametrize(
    ("job", "tags", "origin"),
    [
        ("stedi_job", {"stedi/trigger": "landing_sensor", "dagster/sensor_name": "landing_sensor"},
         {"job": "stedi_job", "trigger": "landing_sensor"}),
        ("__ASSET_JOB", {}, {"job": "assets selected directly (no named job)",
                             "trigger": "manual"}),
        ("__ASSET_JOB", {"dagster/sensor_name": "other_sensor"},
         {"job": "assets selected directly (no named job)", "trigger": "sensor other_sensor"}),
        ("stedi_job", {"dagster/schedule_name": "stedi_daily_schedule"},
         {"job": "stedi_job", "trigger": "schedule stedi_daily_schedule"}),
    ],
)
def test_alerts_name_a_run_by_its_job_and_what_started_it_never_asset_job(job, tags, origin):
    assert run_origin(job, tags) == origin
