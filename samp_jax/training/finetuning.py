"""Fine-tuning with optax (AdamW, warmup then linear decay) and a cache of fine-tuned models.

The loss is the task's for the model's head (`Task.training_loss_for`): softmax cross-entropy
for classes, sigmoid cross-entropy per label for label sets (multi-label) and for the 0/1 gold
of a one-output head, squared error for its scores; a ranking's rows are binary examples, each
relevant (relevance 1 or more) or not: sigmoid cross-entropy of a one-output head, softmax
cross-entropy of a two-class head with class 1 relevant (sentence-transformers' CrossEncoder
defaults), its dev metric the ranking metric over whole queries. The tuned head records the
HF `problem_type` of that loss, so a checkpoint saved from it is trained and read by HF as it
was here.

The train step is one jit-compiled function of (params, optimizer state, batch); batches are
cut to length buckets, so it compiles once per bucket. A run takes `epochs` passes but at least
`min_steps` steps, so that a few hundred rows get enough updates. The dev split is scored every
`eval_every` steps (by default ten times per run); the best parameters are kept and training
stops after `patience` evaluations without improvement (never before `min_steps`), counted only
once the best dev metric beats always predicting the most frequent dev class: a run still at that level (a tagger
predicts only "O" at first) trains to its last step. The result says whether the best dev
metric beats it by more than the noise of the best of as many evaluations as were made
(`FinetuneResult.learned`). Fine-tuned models are cached as HF checkpoint
folders keyed by task, seed and settings, so tests, the demo and the search re-use them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from samp_jax.core.assets import cache_dir, minilm_path
from samp_jax.core import strict_json
from samp_jax.core.atomic import atomic_folder, warn_not_cached
from samp_jax.core.digests import changed_files, folder_digests
from samp_jax.core.errors import SampJaxError
from samp_jax.core.progress import progress_bar
from samp_jax.models.checkpoint import load_pretrained, save_pretrained
from samp_jax.models.heads import check_labels
from samp_jax.models.tokenizer import Tokenizer
from samp_jax.serving.forward import batch_inputs, merged_call
from samp_jax.tasks.chance import ChanceLevel, chance_level
from samp_jax.tasks.losses import Loss
from samp_jax.tasks.task import (LabelMismatch, Task, check_head_fits, get_task, predict,
                                 warn_if_named_two_classes, with_model_relevant_class)
from samp_jax.tasks.trained_rows import TRAINED_ROWS_CONFIG, save_trained_rows
from samp_jax.tasks.truncation import Truncation


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning settings. Everything here is part of the cache key.

    Attributes:
      learning_rate: peak AdamW learning rate.
      weight_decay: decoupled weight decay on matrices (not on biases or LayerNorm).
      warmup_fraction: share of steps with a linear warmup from 0.
      batch_size: examples per step.
      epochs: passes over the (possibly subsampled) training split.
      max_train_examples: subsample of the training split (seeded), or None for all of it.
      max_dev_examples: dev examples scored at each evaluation (a seeded subsample of a larger
        dev split), or None for all.
      eval_every: steps between dev evaluations; None: a tenth of the run's steps.
      patience: dev evaluations without improvement before stopping (once `min_steps` ran).
      seed: data order, subsample and head initialisation.
      min_steps: the fewest optimizer steps, whatever the data size (more epochs on small
        data); 0 for exactly `epochs`.

    The defaults are `samp-jax finetune`'s (its `--help`), which fit a few hundred rows as well
    as many thousands (docs/results/finetune_small_data.md): batch 16, 2 epochs but at least
    200 steps, warm-up 0.1, ten dev evaluations per run, patience 5. The built-in tasks'
    settings (`DEFAULT_CONFIGS`) are their own.
    """

    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    batch_size: int = 16
    epochs: float = 2.0
    max_train_examples: int | None = None
    max_dev_examples: int | None = 1000
    eval_every: int | None = None
    patience: int = 5
    seed: int = 0
    min_steps: int = 200

    def __post_init__(self):
        if self.learning_rate <= 0 or self.batch_size < 1 or self.epochs <= 0 or \
                (self.eval_every is not None and self.eval_every < 1) or self.min_steps < 0 or \
                self.patience < 1 or not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"invalid fine-tuning settings: {self}")

    def key(self) -> str:
        settings = dataclasses.asdict(self)
        if settings["min_steps"] == 0:  # the key of a run without it stays what it was
            del settings["min_steps"]
        if settings["max_dev_examples"] is not None:  # a seeded sample, once the first rows
            settings["dev_sample"] = "seeded"
        text = json.dumps(settings, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def steps(self, train_rows: int) -> tuple[int, int, int]:
        """(total steps, warm-up steps, steps between dev evaluations) for `train_rows` rows."""
        steps_per_epoch = -(-train_rows // self.batch_size)
        total = max(1, int(round(steps_per_epoch * self.epochs)), self.min_steps)
        warmup = max(1, int(self.warmup_fraction * total))
        return total, warmup, self.eval_every or max(1, total // 10)


# Settings that fit the CPU budget (about 10 minutes per task on 2 cores); see docs/results/accuracy.md.
# Each gives every setting, so that its cache key (the folder a fine-tuned model is kept in)
# never moves with FinetuneConfig's defaults.
DEFAULT_CONFIGS = {
    "snli": FinetuneConfig(learning_rate=1e-4, batch_size=32, max_train_examples=20_000,
                           eval_every=125, epochs=1.0, warmup_fraction=0.06, patience=3,
                           min_steps=0, max_dev_examples=1000),
    "polarity": FinetuneConfig(learning_rate=5e-5, batch_size=32, epochs=1.5, eval_every=100,
                               warmup_fraction=0.06, patience=3, min_steps=0,
                               max_dev_examples=1000),
    "wnut16": FinetuneConfig(learning_rate=3e-4, batch_size=16, epochs=8.0, eval_every=69,
                             patience=3, warmup_fraction=0.1, max_dev_examples=None, min_steps=0),
}


@dataclasses.dataclass
class FinetuneResult:
    """The best model and how it was reached.

    `chance` is what always predicting the most frequent dev class scores on dev (a ranking:
    the same score for every passage; None for tasks without either), with the noise of the
    best of the run's dev evaluations (`ChanceLevel.evaluations`: the best of N noisy scores
    strays further than one); `learned` is False when the best dev metric does not beat it by
    more than that noise. `truncation` says, for the train and dev rows
    trained and scored on, what cutting them at the task's length left out; `dev_examples` is
    how many dev rows each evaluation scored (`max_dev_examples` of a larger dev split).
    """

    model: Any
    dev_metric: float
    steps: int
    seconds: float
    history: list[dict]
    examples_per_second: float
    chance: ChanceLevel | None = None
    truncation: dict[str, Truncation | None] = dataclasses.field(default_factory=dict)
    dev_examples: int | None = None  # the dev rows each evaluation scored

    @property
    def evaluations(self) -> int:
        """How many dev evaluations the run made: `dev_metric` is the best of them."""
        return dev_evaluations(self.history)

    @property
    def learned(self) -> bool:
        """Whether the best dev metric beats `chance` by more than its noise."""
        return self.chance is None or self.chance.beaten_by(self.dev_metric)


def dev_evaluations(history: list[dict]) -> int:
    """The entries of a run's history that hold a dev evaluation."""
    return sum("dev" in entry for entry in history)


def _decay_mask(params):
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def finetune(model, task: Task | str, tokenizer: Tokenizer, config: FinetuneConfig = FinetuneConfig(),
             *, progress: bool | None = None,
             on_encoded: Callable[[dict[str, Truncation]], None] | None = None) -> FinetuneResult:
    """Fine-tunes a float `EncoderModel` (whose head fits the task) on the task's train split.

    The model passed in is not modified; the result holds a new model with the best dev
    parameters, whose two-class head read as a ranking keeps the task's `relevant_class` (its
    `relevant_class`, which a saved folder carries; None where the task names none). A sequence head with no problem type yet (a new head, or a checkpoint that
    names none) takes the one of the task's loss before its fit is checked; one that names
    another way of reading its logits is refused (`check_head_fits`). `on_encoded`, if given,
    is called with the train and dev splits' truncation once they are encoded, before
    training (so a caller can say what the cut left out before the slow part). `progress`:
    a bar on standard error, None drawing it on a terminal or in a notebook but not in a log
    or a pipe (`samp_jax.core.progress`), True always, False never; each dev evaluation is
    a line there unless it is False.
    """

    task = get_task(task, seed=config.seed) if isinstance(task, str) else task
    loss = task.training_loss_for(model)  # raises for a task without one, before any work
    model = nnx.clone(model)
    if hasattr(model.head, "problem_type") and model.head.problem_type is None:
        model.head.problem_type = loss.problem_type
    try:
        check_head_fits(model, task)
    except LabelMismatch as e:
        raise ValueError(f"{e}. Or, to train this head for the task's labels instead, clear its "
                         "names first (model.head.labels = None), as samp-jax finetune gives a "
                         "head of other names a new one") from None
    task = with_model_relevant_class(model, task)
    warn_if_named_two_classes(model, task)
    splits = task.splits
    if not splits.train or not splits.dev:
        raise ValueError(f"task {task.name!r} needs train and dev examples to fine-tune; it has "
                         f"{len(splits.train)} and {len(splits.dev)}")
    rng = np.random.default_rng(config.seed)
    train, dev = _encoded_splits(task, tokenizer, config, rng)
    _check_dev_gold(task, dev)
    if on_encoded is not None:
        on_encoded({"train": train.truncation, "dev": dev.truncation})
    total_steps, warmup, eval_every = config.steps(len(train))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = _optimizer(config, total_steps, warmup, params)
    train_step, dev_score = _compiled_steps(graphdef, rest, tx, task, dev, loss)
    # one evaluation's noise: when early stopping starts counting (the run's verdict, below,
    # takes the best of all its evaluations)
    chance = chance_level(task.task_type, task.labels, dev, task.task_metric)
    run = _train(train_step, dev_score, params, tx.init(params), train, rng, config,
                 total_steps=total_steps, eval_every=eval_every, task=task, progress=progress,
                 chance=chance)
    best_metric, _, best_params = run.best
    evaluations = dev_evaluations(run.history)
    if chance is not None and evaluations > 1:  # the best of them: a wider margin
        chance = chance_level(task.task_type, task.labels, dev, task.task_metric,
                              evaluations=evaluations)
    tuned = nnx.merge(graphdef, jax.tree.map(jnp.asarray, best_params), rest)
    if tuned.head.labels is None and task.labels is not None:  # a new head learns the task's names
        tuned.head.labels = check_labels(task.labels, tuned.head.num_labels)
    if hasattr(tuned.head, "problem_type"):  # what it was trained for, as HF names it
        tuned.head.problem_type = loss.problem_type
    if hasattr(tuned.head, "relevant_class"):  # the class trained as relevant, where told
        tuned.head.relevant_class = task.relevant_class
    if tuned.tokenizer is None:
        tuned.tokenizer = tokenizer
    return FinetuneResult(model=tuned, dev_metric=best_metric, steps=run.step, seconds=run.seconds,
                          history=run.history, examples_per_second=run.seen / run.seconds,
                          chance=chance, truncation={"train": train.truncation,
                                                     "dev": dev.truncation},
                          dev_examples=len(dev))


def _encoded_splits(task: Task, tokenizer: Tokenizer, config: FinetuneConfig, rng):
    """The encoded train split (subsampled to `max_train_examples` with `rng`) and dev split
    (`Task.examples`' seeded subset of `max_dev_examples`, kept in split order and drawn
    apart from `rng`, so the training order stays the seed's: a dev file sorted by class or
    date gives every part its share). A ranking's train subsample is whole queries too
    (`Task.examples`)."""
    train_examples = list(task.splits.train)
    if config.max_train_examples is not None and config.max_train_examples < len(train_examples):
        if task.task_type.grouped:
            train_examples = task.examples("train", max_examples=config.max_train_examples,
                                           seed=config.seed)
        else:
            keep = np.sort(rng.choice(len(train_examples), config.max_train_examples,
                                      replace=False))
            train_examples = [train_examples[i] for i in keep]
    dev_examples = task.examples("dev", max_examples=config.max_dev_examples, seed=config.seed)
    return task.encode(tokenizer, train_examples), task.encode(tokenizer, dev_examples)


def _check_dev_gold(task: Task, dev) -> None:
    """Refuses, before training, a dev split the task's metric cannot tell models apart on (a
    ranking's dev split without a relevant row, or of one-row queries: the same score for
    every checkpoint), as `eval` and `search` refuse such a split (`Metric.check_gold`)."""
    metric = task.task_metric
    if metric is None or metric.check_gold is None:
        return
    try:
        metric.check_gold(dev.gold)
    except ValueError as e:
        raise ValueError(f"task {task.name!r}: its dev split cannot pick a checkpoint: {e}") from None


def _optimizer(config: FinetuneConfig, total_steps: int, warmup: int, params):
    """AdamW with a linear warmup to the peak rate, then a linear decay to 0; matrices only
    are decayed."""
    schedule = optax.join_schedules([
        optax.linear_schedule(0.0, config.learning_rate, warmup),
        optax.linear_schedule(config.learning_rate, 0.0, total_steps - warmup)], [warmup])
    return optax.adamw(schedule, weight_decay=config.weight_decay, mask=_decay_mask(params))


def _compiled_steps(graphdef, rest, tx, task: Task, dev, training_loss: Loss):
    """`train_step(params, opt_state, batch) -> (params, opt_state, loss)` (jit-compiled,
    minimising `training_loss`) and `dev_score(params) -> float`, the task's metric on the
    encoded `dev` split."""

    @jax.jit
    def train_step(params, opt_state, batch):
        def loss_fn(p):
            logits = merged_call(graphdef, (p, rest), *batch_inputs(batch))
            return training_loss.fn(logits, batch["labels"])
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def logits_fn(params, input_ids, attention_mask, token_type_ids):
        return merged_call(graphdef, (params, rest), input_ids, attention_mask, token_type_ids)

    def dev_score(params) -> float:
        forward = lambda b: logits_fn(params, *batch_inputs(b))  # noqa: E731
        return task.score(predict(forward, dev), dev)["value"]

    return train_step, dev_score


@dataclasses.dataclass
class _Run:
    """What a training loop reached: the best (dev metric, step, host copy of the parameters),
    the steps taken, the examples seen, the seconds it took and the loss/dev history."""

    best: tuple
    step: int
    seen: int
    seconds: float
    history: list[dict]


def _train(train_step, dev_score, params, opt_state, train, rng, config: FinetuneConfig, *,
           total_steps: int, eval_every: int, task: Task, progress: bool | None,
           chance: ChanceLevel | None = None) -> _Run:
    """Steps through `train` batches until `total_steps`, scoring dev every `eval_every` steps
    and stopping after `config.patience` evaluations without improvement once the best dev
    metric beats `chance` (before that, a flat metric is no reason to stop)."""
    # The untrained model is never a candidate: a head that has not moved yet must not win
    # early stopping just because the metric starts flat (NER predicts only "O" at first).
    best = (-np.inf, 0, jax.tree.map(np.asarray, params))
    history = []
    bad_evals, step, seen, start = 0, 0, 0, time.perf_counter()
    bar = progress_bar(progress, total=total_steps, desc=f"fine-tune {task.name}", unit="step")
    losses = []
    stop = False
    while step < total_steps and not stop:
        for rows, batch in train.batches(config.batch_size, rng=rng):
            params, opt_state, loss = train_step(params, opt_state, batch)
            step += 1
            seen += len(rows)
            losses.append(loss)
            if step % 10 == 0 or step == total_steps:
                mean_loss = float(jnp.mean(jnp.stack(losses)))
                losses = []
                bar.set_postfix(loss=f"{mean_loss:.3f}", ex_per_s=f"{seen / (time.perf_counter() - start):.0f}")
                history.append({"step": step, "loss": mean_loss})
            bar.update(1)
            if step % eval_every == 0 or step == total_steps:
                score = dev_score(params)
                history.append({"step": step, "dev": score})
                if progress is not False:  # to stderr, never stdout (which may carry JSON); a
                    # line per evaluation, in a log too (the bar is drawn on a terminal only)
                    bar.write(f"step {step}: dev {task.metric} {score:.4f}", file=sys.stderr)
                if score > best[0]:
                    best, bad_evals = (score, step, jax.tree.map(np.asarray, params)), 0
                elif chance is None or chance.beaten_by(best[0]):
                    bad_evals += 1
                    if bad_evals >= config.patience and step >= config.min_steps:
                        stop = True
                        break
            if step >= total_steps:
                break
    bar.close()
    return _Run(best, step, seen, time.perf_counter() - start, history)


INFO_FILE = "finetune.json"  # a cached fine-tune's summary and the list of its other files


def finetuned_dir(task: str, config: FinetuneConfig) -> Path:
    """Cache folder of a fine-tuned MiniLM for `task` under `config`."""
    return cache_dir() / "finetuned" / f"minilm-{task}-seed{config.seed}-{config.key()}"


def finetuned_model(task: str, config: FinetuneConfig | None = None, *, train_if_missing: bool = True,
                    progress: bool | None = None):
    """The all-MiniLM-L6-v2 backbone fine-tuned on `task`, from the cache or trained now.

    Returns `(model, tokenizer, info)`, where `info` is the cached `finetune.json`
    (dev metric, steps, seconds, history, and `files`: every other file of the folder with its
    sha256 and size). The cached folder keeps its training rows' digests
    as a `samp-jax finetune` folder does (`samp_jax.tasks.trained_rows`), for a command given
    it as `--model`. A cache that cannot be written (read-only, full) is
    a warning naming the folder and the OS error, and the model trained now is returned.
    A cached model is used only when its folder is as written: `finetune.json` holds the sha256
    of the rest of itself (`SEAL_FIELD`), and a file changed, missing or added since (a damaged
    disk, an edit, a copy cut short), a `finetune.json` edited, unreadable or without its seal,
    is one warning naming the folder and the first six such files (found vs recorded), and the
    model is trained again and cached in its place. A cache entry that is a link to another
    folder is not replaced (a warning that it could not be written, as for a read-only cache).

    Raises:
      FileNotFoundError: not cached and `train_if_missing=False`.
      CachedModelError: cached but changed since it was written, and `train_if_missing=False`.
    """
    config = config or DEFAULT_CONFIGS[task]
    task_obj = get_task(task, seed=config.seed)
    folder = finetuned_dir(task, config)
    if (folder / INFO_FILE).is_file():
        info, problems = _read_cached(folder)
        if not problems:
            return load_pretrained(folder), Tokenizer.from_pretrained(folder), info
        damage = (f"the cached fine-tuned {task} model {folder} is not as it was written: "
                  + "; ".join(problems[:6])
                  + (f"; and {len(problems) - 6} more" if len(problems) > 6 else ""))
        if not train_if_missing:
            raise CachedModelError(f"{damage}. Delete the folder, or pass train_if_missing=True, "
                                   "to train it again")
        warnings.warn(f"{damage}; training it again")
    elif not train_if_missing:
        raise FileNotFoundError(f"no fine-tuned {task} model at {folder}")
    base = minilm_path()
    model = load_pretrained(base, head=task_obj.head, num_labels=len(task_obj.labels),
                            allow_new_head=True)
    tokenizer = Tokenizer.from_pretrained(base, sentence_transformers=False)  # a new head
    result = finetune(model, task_obj, tokenizer, config, progress=progress)
    info = {"task": task, "config": dataclasses.asdict(config), "dev_metric": result.dev_metric,
            "metric": task_obj.metric, "steps": result.steps, "seconds": result.seconds,
            "examples_per_second": result.examples_per_second, "history": result.history,
            "device": jax.devices()[0].device_kind}

    def write(target: Path) -> dict:
        save_pretrained(result.model, target, tokenizer_dir=base, labels=task_obj.labels,
                        extra=TRAINED_ROWS_CONFIG)  # its training rows, for `--model DIR`
        save_trained_rows(target, task_obj.split("train"))
        return _write_info(target, info)
    # the cache's own folder: a damaged entry is replaced, whatever is left of it; not a folder
    # the entry links to (atomic_folder replaces a link's target), which may hold a user's files
    own = Path(os.path.abspath(folder))
    try:
        with atomic_folder(folder, replaceable=lambda found: Path(found) == own) as staging:
            info = write(staging)
    except OSError as e:  # a read-only or full cache: the model is loaded as saved elsewhere
        warn_not_cached("fine-tuned model", folder, e)
        try:  # as a cached copy loads (its saved dtypes), where a scratch folder is written
            with tempfile.TemporaryDirectory() as scratch:
                info = write(Path(scratch) / "model")
                return load_pretrained(Path(scratch) / "model"), \
                    Tokenizer.from_pretrained(Path(scratch) / "model"), info
        except OSError:  # no room there either: the model as trained
            return result.model, tokenizer, info
    return load_pretrained(folder), Tokenizer.from_pretrained(folder), info


class CachedModelError(SampJaxError, ValueError):
    """A cached fine-tuned model whose folder changed since it was written."""


# finetune.json's field holding the sha256 of the rest of it (`_seal`)
SEAL_FIELD = "sha256"


def _seal(info: dict) -> str:
    """The sha256 of `info` but `SEAL_FIELD`, as canonical JSON (sorted keys; NaN as null)."""
    rest = {k: v for k, v in info.items() if k != SEAL_FIELD}
    return hashlib.sha256(strict_json.dumps(rest, sort_keys=True).encode()).hexdigest()


def _write_info(folder: Path, info: dict) -> dict:
    """Writes `folder`'s `finetune.json`: `info`, the other files' digests (`files`) and the
    seal (`SEAL_FIELD`); returns what it wrote."""
    written = {**info, "files": folder_digests(folder, exclude=(INFO_FILE,))}
    written[SEAL_FIELD] = _seal(written)
    (folder / INFO_FILE).write_text(strict_json.dumps(written, indent=1))
    return written


def _read_cached(folder: Path) -> tuple[dict, list[str]]:
    """A cached fine-tune's `finetune.json` and how the entry differs from what was written:
    `finetune.json` unreadable, not a JSON object, without its seal or changed since it was
    sealed (`SEAL_FIELD`), or the other files of the folder not as it lists them
    (`samp_jax.core.digests.changed_files`)."""
    try:
        info = json.loads((folder / INFO_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return {}, [f"{INFO_FILE}: unreadable ({e})"]
    if not isinstance(info, dict):
        return {}, [f"{INFO_FILE}: a JSON {type(info).__name__}, expected an object"]
    if not isinstance(info.get(SEAL_FIELD), str):
        return info, [f"{INFO_FILE} has no {SEAL_FIELD} of its contents and no list of the "
                      "folder's files to check them against (it was written without them)"]
    problems = [] if info[SEAL_FIELD] == _seal(info) else [
        f"{INFO_FILE}: its contents do not match its {SEAL_FIELD} (edited since it was written)"]
    return info, problems + changed_files(folder, info.get("files"), manifest=INFO_FILE,
                                          exclude=(INFO_FILE,))
