"""Every pipeline check, by name: the tasks' failures (include/alerts/task_checks.py) and the data's
health (include/alerts/health_checks.py)."""

from __future__ import annotations

from include.alerts.checks import PipelineCheck
from include.alerts.health_checks import HEALTH_CHECKS
from include.alerts.task_checks import TASK_CHECKS

PIPELINE_CHECKS: dict[str, PipelineCheck] = {**TASK_CHECKS, **HEALTH_CHECKS}
