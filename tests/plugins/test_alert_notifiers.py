"""The alert notifiers (plugins/alert_notifiers.py) against receivers on real sockets: what a webhook
and a mail server get, the connection forms, and the webhook's URL (its token) kept out of errors and
logs. The outbox around them is tested in tests/alerts/test_delivery.py."""

from __future__ import annotations

import json
import logging

import pytest
from alert_notifiers import EMAIL, WEBHOOK, WebhookError, alert_senders

from include.alerts.delivery import ChannelUnreachable
from include.alerts.model import FIRED
from include.alerts.store import Pending
from include.config import load_settings
from tests.support.alert_examples import market_alert
from tests.support.net import free_port
from tests.support.receivers import SmtpReceiver, WebhookReceiver

TOKEN_PATH = "/services/T000/B000/not-a-token"
# An alert's text holding what a template engine or a markup would act on: it must arrive as written.
TRICKY = "btc-100k: BTCUSDT 1m: close crosses 100000 (up) {{ 7 * 7 }} <b>&</b>"


def senders(monkeypatch, webhook_connection: str | None = None, smtp_connection: str | None = None, to: str = ""):
    for variable, value in (
        ("AIRFLOW_CONN_ALERTS_WEBHOOK", webhook_connection),
        ("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection),
    ):
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    return alert_senders(load_settings({"ALERT_EMAIL_TO": to}))


def fired(message: str | None = None, channel: str = WEBHOOK) -> Pending:
    return Pending(market_alert(message=message), channel, FIRED, attempts=0)


def test_no_channel_is_configured_by_default(monkeypatch):
    assert senders(monkeypatch) == {}


def test_the_webhook_gets_slack_json_with_the_alert_as_written(monkeypatch):
    with WebhookReceiver(path=TOKEN_PATH) as webhook:
        # The URI form of a connection, whose path Airflow keeps in ``schema``.
        send = senders(monkeypatch, f"http://127.0.0.1:{webhook.port}{TOKEN_PATH}")[WEBHOOK]
        send(fired(TRICKY))

    [request] = webhook.requests
    assert request.path == TOKEN_PATH
    assert request.body["text"] == "[cryptoflow] " + TRICKY.replace("&", "&amp;").replace("<", "&lt;").replace(
        ">", "&gt;"
    )
    assert [block["type"] for block in request.body["blocks"]] == ["section", "context"]
    assert request.body["alert"]["message"] == TRICKY  # not rendered as a template
    assert request.body["alert"]["open_time"] == "2026-12-07T17:05:00+00:00"
    assert request.body["alert"]["delivery_id"] == request.headers["Idempotency-Key"]


def test_a_webhook_error_names_the_answer_and_never_the_url(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # httpx logs each request's URL (Airflow quiets it)
    with WebhookReceiver(path=TOKEN_PATH, status=500) as webhook:
        # as httpx normalises it: the host's case and an explicit port differ from the connection's text
        connection = json.loads(webhook.connection())
        connection["host"] = connection["host"].replace("127.0.0.1", "LOCALHOST")
        send = senders(monkeypatch, json.dumps(connection))[WEBHOOK]
        with pytest.raises(WebhookError, match="'alerts_webhook' answered 500") as refused:
            send(fired())
    with pytest.raises(ChannelUnreachable) as unreachable:  # the receiver is gone now
        send(fired())

    for text in (str(refused.value), str(unreachable.value), caplog.text):
        assert "not-a-token" not in text


def test_a_connection_without_a_webhook_url_is_named(monkeypatch):
    send = senders(monkeypatch, json.dumps({"conn_type": "http", "host": "ftp://files.example.com/in"}))[WEBHOOK]
    with pytest.raises(WebhookError, match="connection 'alerts_webhook' holds no http"):
        send(fired())


def test_the_email_carries_the_alert_id_and_escapes_its_text(monkeypatch):
    with SmtpReceiver() as smtp:
        send = senders(monkeypatch, smtp_connection=smtp.connection(), to="ops@example.com,desk@example.com")[EMAIL]
        send(fired(TRICKY, EMAIL))

    [mail] = smtp.messages
    alert_id = market_alert().alert_id
    assert mail["Message-ID"] == f"<{alert_id}.fired@cryptoflow>"
    assert mail["X-Cryptoflow-Delivery"] == f"{alert_id}:fired"
    assert mail["To"] == "ops@example.com, desk@example.com"
    assert mail["Subject"] == f"[cryptoflow] {TRICKY}"
    body = mail.get_body().get_content()
    assert "{{ 7 * 7 }} &lt;b&gt;&amp;&lt;/b&gt;" in body
    assert "<td>100012.5</td>" in body


def test_an_smtp_server_that_is_down_is_unreachable(monkeypatch):
    down = SmtpReceiver(free_port())  # never started
    send = senders(monkeypatch, smtp_connection=down.connection(), to="ops@example.com")[EMAIL]
    with pytest.raises(ChannelUnreachable, match="SMTP connection 'smtp_default'"):
        send(fired(channel=EMAIL))
