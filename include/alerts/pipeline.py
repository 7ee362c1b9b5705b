"""Pipeline alerts: the checks of the pipeline's health, each returning the incidents it sees now.

(Being written: this module's checks come with their own tests.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from include.alerts.model import Alert
from include.config import Settings
from include.lake.store import ObjectStore
from include.warehouse.shared import Dialect, Execute


@dataclass(frozen=True)
class CheckInput:
    """What a check reads: the warehouse, the lake, the settings and the evaluation's clock."""

    execute: Execute
    dialect: Dialect
    lake: ObjectStore
    settings: Settings
    now: datetime


# A check returns the incidents it sees now, each an Alert of kind PIPELINE with a stable id made of
# the check's name, the subject and the evidence the incident began with. An alert returned with
# resolved_at set is a fact with nothing to clear (an exchange-side hole): it is stored once, resolved.
PipelineCheck = Callable[[CheckInput], list[Alert]]
PIPELINE_CHECKS: dict[str, PipelineCheck] = {}
