"""A metric registered from outside the package: `register_metric` puts it in `METRICS` (what
the search and its report read) and in its task types' `other_metrics` (what `Task`,
`--metric` and the CLI help offer) together; a half-registered one is refused when the task is
made, before any slow step."""

import dataclasses

import pytest

from samp_jax.app.cli import build_parser
from samp_jax.tasks import METRICS, TASK_TYPES, load_task, register_metric
from samp_jax.tasks.metrics import ACCURACY, get_metric

ROWS = [{"text": f"row {i}", "label": ("no", "yes")[i % 2]} for i in range(40)]
SAME = dataclasses.replace(ACCURACY, name="same_accuracy", display_name="same accuracy")


@pytest.fixture
def registries():
    """METRICS and TASK_TYPES, restored after the test."""
    metrics, types = dict(METRICS), dict(TASK_TYPES)
    yield
    METRICS.clear()
    METRICS.update(metrics)
    TASK_TYPES.clear()
    TASK_TYPES.update(types)


def _task(metric_name):
    return dataclasses.replace(load_task(ROWS, labels=("no", "yes")), metric_name=metric_name)


def test_a_registered_metric_is_offered_and_read_by_name(registries):
    assert register_metric(SAME, task_types=("text_classification",)) is SAME
    assert get_metric("same_accuracy") is SAME
    assert SAME in TASK_TYPES["text_classification"].other_metrics
    assert SAME not in TASK_TYPES["text_pair_classification"].other_metrics
    assert _task("same_accuracy").task_metric is SAME
    search = build_parser()._subparsers._group_actions[0].choices["search"]
    assert "same_accuracy" in next(a for a in search._actions if a.dest == "metric").help
    with pytest.raises(ValueError, match="metric 'same_accuracy' is already registered; pass replace=True"):
        register_metric(SAME, task_types=("text_classification",))
    newer = dataclasses.replace(SAME, display_name="newer")
    register_metric(newer, task_types=("text_pair_classification",), replace=True)
    assert get_metric("same_accuracy") is newer  # replaced everywhere it is offered
    assert newer in TASK_TYPES["text_classification"].other_metrics
    assert newer in TASK_TYPES["text_pair_classification"].other_metrics
    assert SAME not in TASK_TYPES["text_classification"].other_metrics


@pytest.mark.parametrize("metric, task_types, error, message", [
    ("accuracy", ("text_classification",), TypeError, "expected a samp_jax.tasks.Metric, got str"),
    (SAME, (), ValueError, "task_types=.*expected a non-empty sequence"),
    (SAME, "text_classification", ValueError, "task_types=.*expected a non-empty sequence"),
    (SAME, ("text_clasification",), ValueError, "task type name='text_clasification' is not one of"),
    (SAME, ("token_classification",), ValueError,
     r"task type 'token_classification' reads its gold from \['tags'\], not 'label'"),
    (ACCURACY, ("text_classification",), ValueError, "metric 'accuracy' is already registered"),
])
def test_a_metric_registration_is_checked(registries, metric, task_types, error, message):
    before = (dict(METRICS), dict(TASK_TYPES))
    with pytest.raises(error, match=message):
        register_metric(metric, task_types=task_types)
    assert (METRICS, TASK_TYPES) == before


def test_a_half_registered_metric_is_refused_when_the_task_is_made(registries):
    register_metric(SAME, task_types=("text_classification",))
    del METRICS["same_accuracy"]  # offered by the task type, unknown to the search's report
    with pytest.raises(ValueError, match="'same_accuracy' is offered by the task type but not registered "
                                         r"in samp_jax.tasks.METRICS.*register_metric"):
        _task("same_accuracy")


def test_a_metric_no_task_type_offers_names_register_metric(registries):
    METRICS["same_accuracy"] = SAME  # the other half
    with pytest.raises(ValueError, match="is not one it can be scored by.*no task type offers it: "
                                         r"samp_jax.tasks.register_metric"):
        _task("same_accuracy")
