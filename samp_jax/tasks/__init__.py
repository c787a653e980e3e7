"""Tasks as data: task types (`TASK_TYPES`), metrics (`METRICS`), proxies (`PROXIES`) and
fine-tuning losses (`samp_jax.tasks.losses`), one `Task` object owning every split, the
`Evaluation` that scores a split, the registered built-in data sets (`TASKS`), and `load_task`,
which makes a `Task` of your own data file."""

from samp_jax.tasks.evaluation import (ClassificationEvaluation, EmbeddingEvaluation, Evaluation,
                                      LabelSetEvaluation, ScoringEvaluation, gather_rows)
from samp_jax.tasks.files import DEFAULT_NAMES, Columns, load_task, read_inputs
from samp_jax.tasks.metrics import METRICS, PROXIES, Metric, Proxy, get_metric, roc_auc, spearman
from samp_jax.tasks.task import SPLITS, TASKS, Task, evaluate, get_task, predict
from samp_jax.tasks.types import (IGNORE, TASK_TYPES, EncodedSplit, TaskType, get_task_type,
                                  register_metric)

__all__ = ["DEFAULT_NAMES", "IGNORE", "METRICS", "PROXIES", "SPLITS", "TASKS", "TASK_TYPES",
           "ClassificationEvaluation", "Columns", "EmbeddingEvaluation", "EncodedSplit", "Evaluation",
           "LabelSetEvaluation", "Metric", "Proxy", "ScoringEvaluation", "Task", "TaskType", "evaluate", "gather_rows", "get_metric", "get_task",
           "get_task_type", "load_task", "predict", "read_inputs", "register_metric", "roc_auc", "spearman"]
