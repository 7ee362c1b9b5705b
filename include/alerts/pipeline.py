"""Every pipeline check, by name: the tasks' failures (include/alerts/task_checks.py), the DAGs' missed
deadlines (include/alerts/deadline_checks.py) and the data's health (include/alerts/health_checks.py)."""

from __future__ import annotations

from include.alerts.checks import PipelineCheck
from include.alerts.deadline_checks import DEADLINE_CHECKS
from include.alerts.health_checks import HEALTH_CHECKS
from include.alerts.task_checks import TASK_CHECKS

PIPELINE_CHECKS: dict[str, PipelineCheck] = {**TASK_CHECKS, **DEADLINE_CHECKS, **HEALTH_CHECKS}
