"""Early stopping in the fine-tune loop: patience counts only once the dev metric beats the
chance level, so a tagger whose entity F1 starts flat at 0 is not stopped before it learns."""

import numpy as np

from samp_jax.tasks import get_task
from samp_jax.tasks.chance import ChanceLevel
from samp_jax.training.finetuning import FinetuneConfig, _train


class _Rows:
    """Stands in for an encoded train split: endless one-row batches."""

    def batches(self, batch_size, rng=None):
        for _ in range(1000):
            yield [0], {}


def _run(dev_scores, chance, *, patience=2, total_steps=20, min_steps=0):
    scores = iter(dev_scores)
    step = lambda params, opt_state, batch: (params, opt_state, np.float32(1.0))  # noqa: E731
    config = FinetuneConfig(patience=patience, min_steps=min_steps)
    return _train(step, lambda params: next(scores), {"w": np.zeros(2)}, None, _Rows(),
                  np.random.default_rng(0), config, total_steps=total_steps, eval_every=2,
                  task=get_task("wnut16"), progress=False, chance=chance)


NER_CHANCE = ChanceLevel("entity_f1", 0.0, "O", 0.0, 200)


def test_a_flat_start_at_chance_does_not_use_up_the_patience():
    run = _run([0.0, 0.0, 0.0, 0.0, 0.1, 0.3, 0.2, 0.2, 0.2, 0.2], NER_CHANCE)
    assert run.best[0] == 0.3 and run.best[1] == 12
    assert run.step == 16  # stopped by patience 2 after the best, not at step 6


def test_patience_counts_once_the_metric_beats_chance_and_without_a_chance_level():
    with_chance = _run([0.2, 0.1, 0.1, 0.5], NER_CHANCE)
    assert with_chance.step == 6 and with_chance.best[0] == 0.2
    without = _run([0.0, 0.0, 0.0, 0.5], None)
    assert without.step == 6 and without.best[0] == 0.0


def test_a_run_that_never_beats_chance_trains_to_its_last_step():
    run = _run([0.0] * 10, NER_CHANCE)
    assert run.step == 20 and run.best[0] == 0.0


def test_patience_never_stops_a_run_before_its_min_steps():
    """--min-steps is a minimum: a dev score that stops improving at once still trains on."""
    run = _run([0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], None, min_steps=12)
    assert run.step == 12 and run.best[0] == 0.2
    assert _run([0.2, 0.1, 0.1] + [0.1] * 7, None).step == 6  # without it: after 2 evaluations
