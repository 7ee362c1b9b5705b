"""How a model's task ends from what the producer's build recorded for its model (Cosmos' status
XCom): success when dbt built it, failed otherwise, and failed, not green, when nothing was recorded.
The trigger itself runs in the triggerer of a real scheduler in tests/test_faults_e2e.py."""

import pytest
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent
from model_reports import ModelBuiltTrigger, model_outcome

MODEL = "model.cryptoflow.candles_1m"


@pytest.mark.parametrize("status", ["success", "pass", "warn"])
def test_a_model_dbt_built_ends_green(status):
    assert isinstance(model_outcome(MODEL, {"status": status, "outlet_uris": []}), TaskSuccessEvent)


@pytest.mark.parametrize(
    "result", [{"status": "error"}, {"status": "fail"}, {"status": "skipped"}, {"status": None}, None, "success"]
)
def test_a_model_dbt_failed_skipped_or_never_reported_ends_red(result, caplog):
    assert isinstance(model_outcome(MODEL, result), TaskFailedEvent)
    assert MODEL in caplog.text  # the log names the model, and where to look


def test_the_trigger_is_recreated_from_what_it_serializes():
    classpath, kwargs = ModelBuiltTrigger(MODEL, "transform.dbt_producer_watcher").serialize()
    assert classpath == "model_reports.ModelBuiltTrigger"
    again = ModelBuiltTrigger(**kwargs)
    assert (again.model_unique_id, again.producer_task_id) == (MODEL, "transform.dbt_producer_watcher")
