"""Airflow notifiers that deliver alerts, and the senders the outbox uses (include/alerts/delivery.py).

- **Webhook** (``AlertWebhookNotifier``): a Slack-compatible JSON POST (``text``, ``blocks``, and the
  alert's fields under ``alert``) to the URL of the Airflow connection ``ALERT_WEBHOOK_CONN_ID``
  (``alerts_webhook``). Our own notifier, not a provider's: the Slack provider is not installed, and a
  Slack-compatible webhook (Slack, Mattermost, Rocket.Chat, a receiver of one's own) needs no SDK; and
  the HTTP provider's ``HttpHook`` logs the URL it posts to and names it in its errors, while Slack's
  webhook URL holds its token, and it counts a redirect as success. So: one ``httpx`` POST with a
  timeout, no redirect followed, any non-2xx answer an error, and the URL in no message.
- **E-mail** (``AlertEmailNotifier``): the SMTP provider's ``SmtpNotifier`` on the connection
  ``ALERT_SMTP_CONN_ID`` (``smtp_default``), to ``ALERT_EMAIL_TO`` from ``ALERT_EMAIL_FROM``, with
  a Message-ID made of the alert's id and event.

Both render no template: an alert's text is data (a dashboard rule's description may hold ``{{``), and
BaseNotifier would render its template fields with Jinja. Both receivers can drop a second copy by
the event's stable id (include/alerts/message.py).
"""

from __future__ import annotations

import html
import logging
from contextlib import suppress
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import httpx
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import BaseHook
from airflow.sdk.bases.notifier import BaseNotifier
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret

from include.alerts.delivery import ChannelUnreachable, Send
from include.alerts.message import alert_fields, delivery_id, headline, message_id
from include.alerts.model import MARKET
from include.alerts.store import Pending
from include.config import AlertSettings, Settings

WEBHOOK, EMAIL = "webhook", "email"  # the channels, as marts.alert_deliveries names them
WEBHOOK_TIMEOUT = httpx.Timeout(5.0, connect=3.0)  # a receiver that hangs must not hold the delivery
MAX_SLACK_TEXT = 2900  # Slack refuses a section's text over 3000 characters
SUBJECT_PREFIX = "[cryptoflow]"


class _OnlyWarnings(logging.Filter):
    """Drops httpx's and httpcore's records below WARNING: httpx logs every request's URL at INFO,
    httpcore its connections at DEBUG, and a webhook's URL is its token. A filter on the logger, not its
    level: whoever sets the level (Airflow, a test, a command line's logging setup) cannot undo it, and
    matching the URL in a record would miss the forms httpx normalises it to (case, ports, escapes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


for _chatty in ("httpx", "httpcore"):
    _logger = logging.getLogger(_chatty)
    if not any(isinstance(existing, _OnlyWarnings) for existing in _logger.filters):
        _logger.addFilter(_OnlyWarnings())


class WebhookError(RuntimeError):
    """The webhook did not accept the alert (its answer, or the failure), without the URL."""


def webhook_url(conn_id: str) -> str:
    """The webhook URL of Airflow connection ``conn_id``: its host when that is a whole URL (the JSON
    form), else its parts (the URI form ``http://host:port/path`` keeps the path in ``schema``)."""
    connection = BaseHook.get_connection(conn_id)
    host = connection.host or ""
    if "://" not in host:
        scheme = "https" if connection.conn_type == "https" else "http"
        port = f":{connection.port}" if connection.port else ""
        host = f"{scheme}://{host}{port}/{(connection.schema or '').lstrip('/')}"
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"Airflow connection {conn_id!r} holds no http(s) webhook URL")
    mask_secret(host)  # Slack's URL is its token: Airflow's logs show it masked, should anything log it
    return host


def webhook_payload(pending: Pending) -> dict[str, Any]:
    """Slack's incoming-webhook JSON (``text`` the fallback, ``blocks`` the layout), plus the alert's
    fields under ``alert`` for a receiver that reads them; Slack ignores what it does not know."""
    line = _slack_escape(headline(pending))[:MAX_SLACK_TEXT]
    title = f"*{pending.alert.kind} alert {pending.event}*"
    moment = pending.alert.event_time.astimezone(UTC)  # the warehouse gives it in the session's zone
    where = f"{pending.alert.subject} · {moment:%Y-%m-%d %H:%M} UTC · id {delivery_id(pending)}"
    return {
        "text": f"{SUBJECT_PREFIX} {line}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{title}\n{line}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(where)}]},
        ],
        "alert": alert_fields(pending),
    }


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters as its entities, so an alert's text is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def post_webhook(conn_id: str, pending: Pending, timeout: httpx.Timeout = WEBHOOK_TIMEOUT) -> None:
    """POST one event; returns once the webhook answered 2xx. Cannot connect: ``ChannelUnreachable``;
    any other failure: ``WebhookError``. Neither names the URL, nor chains an error that does."""
    url = webhook_url(conn_id)
    headers = {"Idempotency-Key": delivery_id(pending)}
    try:
        answer = httpx.post(url, json=webhook_payload(pending), headers=headers, timeout=timeout)
    except (httpx.ConnectError, httpx.TimeoutException) as error:  # down, or hanging: the rest waits too
        raise ChannelUnreachable(f"webhook {conn_id!r}: {type(error).__name__} {_scrub(str(error), url)}") from None
    except httpx.HTTPError as error:
        raise WebhookError(f"webhook {conn_id!r}: {type(error).__name__}: {_scrub(str(error), url)}") from None
    if not answer.is_success:
        raise WebhookError(f"webhook {conn_id!r} answered {answer.status_code}: {_scrub(answer.text[:200], url)}")


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL or its path (where a token lives)."""
    path = urlsplit(url).path
    text = text.replace(url, "<webhook url>")
    return text.replace(path, "<path>") if len(path) > 1 else text


class AlertWebhookNotifier(BaseNotifier):
    """Posts one event of one alert to the webhook of Airflow connection ``conn_id``."""

    template_fields = ()  # an alert's text is data, never a template (the module docstring)

    def __init__(self, pending: Pending, conn_id: str = AlertSettings.webhook_conn_id) -> None:
        super().__init__()
        self.pending = pending
        self.conn_id = conn_id

    def notify(self, context: Any) -> None:
        post_webhook(self.conn_id, self.pending)


class AlertEmailNotifier(SmtpNotifier):
    """E-mails one event of one alert through the SMTP provider, with a stable Message-ID."""

    template_fields = ()  # an alert's text is data, never a template (the module docstring)

    def __init__(self, pending: Pending, alerts: AlertSettings) -> None:
        super().__init__(
            to=list(alerts.email_to),
            from_email=alerts.email_from,
            subject=f"{SUBJECT_PREFIX} {headline(pending)}"[:250],
            html_content=email_html(pending),
            custom_headers={"Message-ID": message_id(pending), "X-Cryptoflow-Delivery": delivery_id(pending)},
            smtp_conn_id=alerts.smtp_conn_id,
        )

    def notify(self, context: Any) -> None:
        # Connect first, apart from the send: a server that cannot be reached or refuses the login
        # fails every event alike, so the outbox stops trying this channel for now.
        try:
            self.hook.get_conn()
        except Exception as error:
            with suppress(Exception):  # a half-open client (connected, then TLS or login failed)
                self.hook.__exit__(None, None, None)
            raise ChannelUnreachable(
                f"SMTP connection {self.smtp_conn_id!r}: {type(error).__name__}: {error}"
            ) from error
        super().notify(context)


def email_html(pending: Pending) -> str:
    """The body: the headline, then the alert's fields as a table, every value escaped."""
    rows = "".join(
        f"<tr><th align='left'>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in alert_fields(pending).items()
        if value is not None
    )
    kind = "Market alert" if pending.alert.kind == MARKET else f"Pipeline incident {pending.event}"
    return f"<p><b>{html.escape(kind)}</b>: {html.escape(headline(pending))}</p><table>{rows}</table>"


def _connection_exists(conn_id: str) -> bool:
    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def alert_senders(settings: Settings) -> dict[str, Send]:
    """One sender per configured channel: the webhook when its connection exists, e-mail when
    ``ALERT_EMAIL_TO`` names a recipient. Each builds the notifier for one event and calls it."""
    alerts = settings.alerts
    senders: dict[str, Send] = {}
    if _connection_exists(alerts.webhook_conn_id):
        senders[WEBHOOK] = lambda pending: AlertWebhookNotifier(pending, alerts.webhook_conn_id)({})
    if alerts.email_to:
        senders[EMAIL] = lambda pending: AlertEmailNotifier(pending, alerts)({})
    return senders
