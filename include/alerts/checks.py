"""What a pipeline check is: a function from ``CheckInput`` to the incidents it sees now.

A check returns each incident as an ``Alert`` of kind PIPELINE, its ``rule_id`` the check's name, its
``subject`` what it is about (a symbol, a task, a writer), and a stable id made of the check's name, the
subject and the evidence the incident began with (``model.alert_id``). An alert returned with
``resolved_at`` set is a fact with nothing to clear (an exchange-side hole): it is stored once, resolved.
The evaluation (include/alerts/evaluate.py) opens, keeps and resolves incidents from what checks return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from include.alerts.model import Alert
from include.config import Settings
from include.lake.store import ObjectStore
from include.warehouse.shared import Dialect, Execute

# How far back a rule reads candles, and a check reads its evidence: longer than a gap takes to be
# repaired (the hourly repair, its grace and a retry), so a candle completed late still fires; and
# bounded, so a run reads bounded rows. (Here, not in evaluate.py, so the checks can import it.)
LOOKBACK = timedelta(days=2)


@dataclass(frozen=True)
class CheckInput:
    """What a check reads: the warehouse, the lake, the settings and the evaluation's clock."""

    execute: Execute
    dialect: Dialect
    lake: ObjectStore
    settings: Settings
    now: datetime


PipelineCheck = Callable[[CheckInput], list[Alert]]
