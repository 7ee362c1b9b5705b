"""The outbox (include/alerts/delivery.py): each alert event reaches each channel once, also when a
receiver is down at first, and a resolved incident's "resolved" after its "fired".

The channels are real: a webhook receiver and an SMTP server on 127.0.0.1 started by the test, reached
through the notifiers of plugins/alert_notifiers.py and Airflow connections given as AIRFLOW_CONN_*.
The store part runs on both warehouses (DuckDB, and Snowflake through fakesnow) with plain senders.
"""

from __future__ import annotations

import tests.support.airflow_env  # noqa: F401  (configures Airflow before anything imports it)

# isort: split

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import fakesnow
import pytest
from alert_notifiers import EMAIL, WEBHOOK, alert_senders

from include.alerts.delivery import deliver_pending
from include.alerts.model import FIRED, RESOLVED, Alert
from include.alerts.store import Pending, ensure_alert_tables, resolve, store_alerts, warehouse_now
from include.config import Settings, load_settings
from include.warehouse.base import Warehouse
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.snowflake_backend import SnowflakeWarehouse
from tests.support.alert_examples import market_alert, stale_incident
from tests.support.receivers import SmtpReceiver, WebhookReceiver

OpenWarehouse = Callable[[], AbstractContextManager[Warehouse]]


def store(open_warehouse: OpenWarehouse, *alerts: Alert) -> None:
    with open_warehouse() as warehouse:
        ensure_alert_tables(warehouse.execute, warehouse.dialect)
        store_alerts(warehouse.execute, warehouse.dialect, alerts, warehouse_now(warehouse.execute))


def resolve_all(open_warehouse: OpenWarehouse, *alerts: Alert) -> None:
    with open_warehouse() as warehouse:
        ids = [alert.alert_id for alert in alerts]
        resolve(warehouse.execute, warehouse.dialect, ids, warehouse_now(warehouse.execute))


def delivery_rows(open_warehouse: OpenWarehouse) -> dict[tuple[str, str, str], tuple[int, bool, str | None]]:
    """(alert, channel, event) -> (attempts, delivered, last error)."""
    with open_warehouse() as warehouse:
        rows = warehouse.execute(
            "select alert_id, channel, event, attempts, delivered_at, last_error from marts.alert_deliveries"
        )
    return {(a, c, e): (int(n), delivered is not None, error) for a, c, e, n, delivered, error in rows}


@pytest.fixture
def duckdb_warehouse(tmp_path) -> OpenWarehouse:
    return lambda: DuckDBWarehouse(tmp_path / "w.duckdb")


@pytest.fixture(params=["duckdb", "snowflake"])
def each_warehouse(request, tmp_path, monkeypatch) -> Iterator[OpenWarehouse]:
    """How to open each backend in turn: DuckDB in a file; Snowflake through fakesnow, whose data
    outlives a connection for as long as the patch holds."""
    if request.param == "duckdb":
        yield lambda: DuckDBWarehouse(tmp_path / "w.duckdb")
        return
    connection = {"conn_type": "snowflake", "login": "alerts", "password": "not-a-secret"}
    connection["extra"] = {"account": "cryptoflow", "database": "cryptoflow", "warehouse": "cryptoflow_wh"}
    monkeypatch.setenv("AIRFLOW_CONN_SNOWFLAKE_DEFAULT", json.dumps(connection))
    with fakesnow.patch():
        yield SnowflakeWarehouse


def channel_settings(monkeypatch, webhook: WebhookReceiver, smtp: SmtpReceiver) -> Settings:
    """The settings and Airflow connections that point both channels at the receivers."""
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_WEBHOOK", webhook.connection())
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp.connection())
    return load_settings({"ALERT_EMAIL_TO": "ops@example.com", "ALERT_EMAIL_FROM": "alerts@example.com"})


def delivered_ids(webhook: WebhookReceiver) -> list[str]:
    return [request.body["alert"]["delivery_id"] for request in webhook.requests]


def test_an_alert_reaches_each_channel_once(duckdb_warehouse, monkeypatch):
    alert = market_alert()
    store(duckdb_warehouse, alert)
    with WebhookReceiver() as webhook, SmtpReceiver() as smtp:
        senders = alert_senders(channel_settings(monkeypatch, webhook, smtp))
        assert set(senders) == {WEBHOOK, EMAIL}
        first = deliver_pending(duckdb_warehouse, senders)
        again = deliver_pending(duckdb_warehouse, senders)

    assert first.failed == []
    assert len(first.delivered) == 2
    assert again.as_dict() == {"delivered": [], "failed": []}
    [request] = webhook.requests
    assert request.path == "/services/T000/B000/not-a-token"
    assert request.headers["Idempotency-Key"] == f"{alert.alert_id}:fired"
    assert request.body["alert"]["value"] == "100012.5"  # exact decimal text, never a float
    assert alert.message in request.body["text"]
    [mail] = smtp.messages
    assert mail["Message-ID"] == f"<{alert.alert_id}.fired@cryptoflow>"
    assert mail["To"] == "ops@example.com"
    assert mail["From"] == "alerts@example.com"
    assert alert.message in mail["Subject"]
    assert delivery_rows(duckdb_warehouse) == {
        (alert.alert_id, WEBHOOK, FIRED): (1, True, None),
        (alert.alert_id, EMAIL, FIRED): (1, True, None),
    }


def test_a_receiver_down_at_first_gets_each_alert_once_it_is_up(duckdb_warehouse, monkeypatch):
    first_alert, second_alert = market_alert(5), market_alert(6)
    store(duckdb_warehouse, first_alert, second_alert)
    webhook = WebhookReceiver()  # its port chosen, nothing listening on it yet
    with SmtpReceiver() as smtp:
        senders = alert_senders(channel_settings(monkeypatch, webhook, smtp))
        down = deliver_pending(duckdb_warehouse, senders)
        # The webhook was tried once (refused), its second event not tried: nothing of it is lost.
        assert len(down.failed) == 2
        assert "not tried" in down.failed[1]
        [(attempts, delivered, error)] = [row for key, row in delivery_rows(duckdb_warehouse).items() if WEBHOOK in key]
        assert (attempts, delivered) == (1, False)
        assert "ChannelUnreachable" in error
        assert "not-a-token" not in error  # the URL's path is the token: in no error
        with webhook:
            up = deliver_pending(duckdb_warehouse, senders)
            after = deliver_pending(duckdb_warehouse, senders)

    assert up.failed == []
    assert after.delivered == []
    assert sorted(delivered_ids(webhook)) == sorted(f"{alert.alert_id}:fired" for alert in (first_alert, second_alert))
    assert sorted(mail["Message-ID"] for mail in smtp.messages) == sorted(
        f"<{alert.alert_id}.fired@cryptoflow>" for alert in (first_alert, second_alert)
    )  # e-mail, up all along: each alert once
    attempts = sorted(row[:2] for key, row in delivery_rows(duckdb_warehouse).items() if WEBHOOK in key)
    assert attempts == [(1, True), (2, True)]  # the one refused at first, delivered at its second attempt


def test_a_resolved_incident_sends_resolved_once_after_fired(duckdb_warehouse, monkeypatch):
    incident = stale_incident()
    store(duckdb_warehouse, incident)
    with WebhookReceiver() as webhook, SmtpReceiver() as smtp:
        senders = alert_senders(channel_settings(monkeypatch, webhook, smtp))
        deliver_pending(duckdb_warehouse, senders)
        resolve_all(duckdb_warehouse, incident)
        deliver_pending(duckdb_warehouse, senders)
        deliver_pending(duckdb_warehouse, senders)

    assert delivered_ids(webhook) == [f"{incident.alert_id}:fired", f"{incident.alert_id}:resolved"]
    assert webhook.requests[1].body["text"].startswith("[cryptoflow] resolved: stale_symbol ETHUSDT: no closed candle")
    assert [mail["Message-ID"] for mail in smtp.messages] == [
        f"<{incident.alert_id}.fired@cryptoflow>",
        f"<{incident.alert_id}.resolved@cryptoflow>",
    ]


class Channel:
    """A plain sender that records what it is given, or fails while ``down`` (an error other than a
    refused connection: each event is tried)."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.tries = 0
        self.received: list[str] = []

    def __call__(self, pending: Pending) -> None:
        self.tries += 1
        if self.down:
            raise RuntimeError("503 from the receiver")
        self.received.append(f"{pending.alert.alert_id}:{pending.event}")


def test_the_outbox_sends_each_event_once_on_each_backend(each_warehouse):
    alerts = sorted([market_alert(5), market_alert(6)], key=lambda alert: alert.alert_id)  # the send order
    store(each_warehouse, *alerts)
    steady, flaky = Channel(), Channel(down=True)

    failing = deliver_pending(each_warehouse, {"steady": steady, "flaky": flaky})
    assert len(failing.failed) == 2
    assert flaky.tries == 2  # a failed event stops neither the next one nor the other channel
    flaky.down = False
    deliver_pending(each_warehouse, {"steady": steady, "flaky": flaky})
    deliver_pending(each_warehouse, {"steady": steady, "flaky": flaky})

    expected = [f"{alert.alert_id}:fired" for alert in alerts]
    assert steady.received == expected
    assert flaky.received == expected
    rows = delivery_rows(each_warehouse)
    assert {key: value[:2] for key, value in rows.items() if key[1] == "flaky"} == {
        (alert.alert_id, "flaky", FIRED): (2, True) for alert in alerts
    }


class Interrupted(BaseException):
    """What a task timeout raises in the middle of a send (Airflow's AirflowTaskTimeout is a BaseException)."""


def test_an_interrupted_delivery_keeps_the_record_of_what_it_sent(duckdb_warehouse):
    first, second = sorted([market_alert(5), market_alert(6)], key=lambda alert: alert.alert_id)  # the send order
    store(duckdb_warehouse, first, second)
    sent: list[str] = []

    def interrupted_at_the_second(pending: Pending) -> None:
        if sent:
            raise Interrupted
        sent.append(pending.alert.alert_id)

    with pytest.raises(Interrupted):
        deliver_pending(duckdb_warehouse, {"ops": interrupted_at_the_second})
    resumed = Channel()
    deliver_pending(duckdb_warehouse, {"ops": resumed})

    assert sent == [first.alert_id]
    assert resumed.received == [f"{second.alert_id}:fired"]  # the first was recorded before the interruption


def test_resolved_waits_for_its_fired_event(duckdb_warehouse):
    incident = stale_incident()
    store(duckdb_warehouse, incident)
    resolve_all(duckdb_warehouse, incident)
    tried: list[str] = []

    def fired_refused(pending: Pending) -> None:
        tried.append(pending.event)
        if pending.event == FIRED:
            raise RuntimeError("400 invalid_payload")

    refused = deliver_pending(duckdb_warehouse, {"ops": fired_refused})
    later = Channel()
    deliver_pending(duckdb_warehouse, {"ops": later})

    assert tried == [FIRED]
    assert "not tried: its fired event" in refused.failed[1]
    assert later.received == [f"{incident.alert_id}:{FIRED}", f"{incident.alert_id}:{RESOLVED}"]


def test_a_webhook_that_hangs_costs_one_timeout_and_its_other_events_wait(duckdb_warehouse, monkeypatch):
    """A receiver that takes the connection and never answers: the first event times out (the pool's
    slot is held meanwhile), the channel is treated as unreachable, the rest is not tried and stays
    pending."""
    import socket

    from tests.support.net import free_port

    store(duckdb_warehouse, market_alert(5), market_alert(6), market_alert(7))
    port = free_port()
    with socket.create_server(("127.0.0.1", port)), SmtpReceiver() as smtp:  # listens, never accepts
        webhook = WebhookReceiver(port=port)
        senders = {WEBHOOK: alert_senders(channel_settings(monkeypatch, webhook, smtp))[WEBHOOK]}
        hung = deliver_pending(duckdb_warehouse, senders)
    assert hung.delivered == []
    assert len(hung.failed) == 3
    assert "ChannelUnreachable" in hung.failed[0]
    assert "ReadTimeout" in hung.failed[0]
    assert all("not tried" in failure for failure in hung.failed[1:])
    assert [row[:2] for row in delivery_rows(duckdb_warehouse).values()] == [(1, False)]
