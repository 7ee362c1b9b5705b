"""The outbox: every alert event a channel has not received, sent, and each outcome recorded.

``marts.alert_deliveries`` (include/alerts/store.py) holds one row per alert, channel and event; an
event without a delivered row is pending. One call of ``deliver_pending``:

1. opens the warehouse briefly and reads every channel's pending events, then **closes it**: DuckDB
   has one writer process, and a slow webhook must not hold the file a load or a transform waits for;
2. sends each event with its channel's ``Send``. A failed event does not stop the others, nor does a
   failed channel stop the other channels. A channel that cannot be reached (``ConnectionError``, of
   which ``ChannelUnreachable`` is one) is not tried again in this call: its other events would each
   wait for the same refusal. A "resolved" event waits for its "fired" one on the same channel;
3. reopens the warehouse and records every attempt: delivered, or failed with its error.

**Never lost**: a failed or untried event keeps no delivered row, so the next call sends it (for
``DELIVERY_HORIZON``, then it is given up and shown as such). **Never twice**: a delivered event is
recorded before this function returns, also when it is interrupted (a task timeout, an error): the
record is written in a ``finally``. One window remains: a process killed between a send and that
record (SIGKILL, power loss), an interruption in the middle of a send (its outcome is unknown, so it
is not recorded), or a warehouse that cannot be reopened to record leaves an event that may have
been delivered pending, and the next call sends it again. Receivers can drop that copy by its stable id
(include/alerts/message.py): the webhook's ``Idempotency-Key`` header and ``alert.delivery_id`` field
(``<alert_id>:<event>``), the e-mail's Message-ID (``<alert_id>.<event>@cryptoflow``), which mail
clients already treat as one message.

No Airflow here: the senders (plugins/alert_notifiers.py) are passed in, so this runs and is tested
without a scheduler.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from include.alerts.message import delivery_id
from include.alerts.model import RESOLVED
from include.alerts.store import Pending, ensure_alert_tables, pending_deliveries, record_deliveries, warehouse_now
from include.warehouse.base import Warehouse

Send = Callable[[Pending], None]
"""Sends one event to one channel; returns once the channel accepted it, raises when it did not."""
OpenWarehouse = Callable[[], AbstractContextManager[Warehouse]]
Outcome = tuple[Pending, str | None]  # an attempt: the event and its error (None: delivered)
MAX_ERROR_CHARS = 500  # an error is stored and shown, not a receiver's whole answer
SEND_BUDGET_SECONDS = 30  # per channel and call: a slow receiver must not hold the writers' pool for long


class ChannelUnreachable(ConnectionError):
    """The channel cannot be reached at all (refused, unknown host, no answer to connect): its other
    events are not tried in this call."""


@dataclass
class DeliveryResult:
    delivered: list[str] = field(default_factory=list)  # "<channel> <alert_id>:<event>"
    failed: list[str] = field(default_factory=list)  # "<channel> <alert_id>:<event>: <error>"

    def as_dict(self) -> dict[str, object]:
        return {"delivered": self.delivered, "failed": self.failed}


def deliver_pending(open_warehouse: OpenWarehouse, senders: Mapping[str, Send]) -> DeliveryResult:
    """Send every channel's pending events once and record each outcome (the module docstring)."""
    if not senders:
        return DeliveryResult()
    with open_warehouse() as warehouse:
        ensure_alert_tables(warehouse.execute, warehouse.dialect)
        now = warehouse_now(warehouse.execute)
        pending = {
            channel: pending_deliveries(warehouse.execute, warehouse.dialect, channel, now) for channel in senders
        }
    result, outcomes = DeliveryResult(), []
    try:
        for channel, events in pending.items():
            for outcome in _send_channel(senders[channel], events, result):
                outcomes.append(outcome)
    finally:
        _record(open_warehouse, outcomes)
    return result


def _send_channel(send: Send, events: Sequence[Pending], result: DeliveryResult) -> Iterator[Outcome]:
    """Each event's attempt, in order, as it is made. Events not tried are reported, not yielded:
    they were not attempted, so nothing about them is recorded. A channel gets SEND_BUDGET_SECONDS per
    call: the alerts task holds the warehouse writers' pool meanwhile, and what is left waits for the
    next run."""
    unreachable: str | None = None
    undelivered: set[str] = set()  # alerts whose fired event did not reach this channel in this call
    deadline = time.monotonic() + SEND_BUDGET_SECONDS
    for pending in events:
        name = f"{pending.channel} {delivery_id(pending)}"
        if not unreachable and time.monotonic() > deadline:
            unreachable = f"this run's {SEND_BUDGET_SECONDS} s of sending are spent"
        if unreachable or (pending.event == RESOLVED and pending.alert.alert_id in undelivered):
            result.failed.append(f"{name}: not tried: {unreachable or 'its fired event is not delivered yet'}")
            undelivered.add(pending.alert.alert_id)
            continue
        error, cannot_connect = _attempt(send, pending)
        if error is None:
            result.delivered.append(name)
        else:
            result.failed.append(f"{name}: {error}")
            undelivered.add(pending.alert.alert_id)
            if cannot_connect:
                unreachable = f"the channel is unreachable ({error})"
        yield pending, error


def _attempt(send: Send, pending: Pending) -> tuple[str | None, bool]:
    """Send one event: its error (None when delivered, else one bounded line), and whether the
    channel could not be reached at all."""
    try:
        send(pending)
    except ConnectionError as error:
        return _one_line(f"{type(error).__name__}: {error}"), True
    except Exception as error:  # one event's failure must not stop the others; it is recorded
        return _one_line(f"{type(error).__name__}: {error}"), False
    return None, False


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_ERROR_CHARS]


def _record(open_warehouse: OpenWarehouse, outcomes: Sequence[Outcome]) -> None:
    if not outcomes:
        return
    with open_warehouse() as warehouse:
        record_deliveries(warehouse.execute, warehouse.dialect, outcomes, warehouse_now(warehouse.execute))
