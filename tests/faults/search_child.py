"""The child process of the whole-run kill -9 test: two searches into one folder.

    python -m tests.faults.search_child OUT

Runs a search of a tiny random BERT (MiniLM's tokenizer) on 80 generated rows into OUT and
prints `first`. When the parent writes a line on stdin, it searches again into OUT with other
options, and kills itself with SIGKILL when the report's plot is about to be written: after
the model, `precision_map.json` and `summary.json` of the second run, before `report.md` and
`pareto.png`. The hook lives here, in the test; the library has none.
"""

import os
import signal
import sys

import numpy as np
from flax import nnx

import samp_jax as sj
from calibrate.search import report
from samp_jax.core.assets import minilm_path
from samp_jax.models import make_head
from samp_jax.tasks.files import load_task
from calibrate.search.config import SearchConfig
from samp_jax.workflows.pipeline import run_search

WORDS = "good bad movie plot day night fine awful happy dull".split()


def setup():
    """`(model, tokenizer, task)`: a tiny random BERT classifier and 80 generated rows."""
    config = sj.EncoderConfig(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4,
                              intermediate_size=64, max_position_embeddings=64)
    rngs = nnx.Rngs(3)
    model = sj.EncoderModel(config, make_head("sequence_classification", config, num_labels=2,
                                              rngs=rngs), rngs=rngs)
    tokenizer = sj.Tokenizer.from_pretrained(minilm_path())
    rng = np.random.default_rng(0)
    rows = [{"text": " ".join(rng.choice(WORDS, 6)), "label": ("neg", "pos")[i % 2]}
            for i in range(80)]
    return model, tokenizer, load_task(rows, labels=("neg", "pos"))


def search_into(out, options, command, model, tokenizer, task):
    config = SearchConfig(options=options, tolerance=0.05, progress=False, target="cpu")
    return run_search(model, tokenizer, task, config, command=command, out=out,
                      compare_presets=False)


def main(out: str) -> None:
    model, tokenizer, task = setup()
    search_into(out, ("fp32", "int8-dynamic"), "first", model, tokenizer, task)
    print("first", flush=True)
    sys.stdin.readline()

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    report.plot_pareto = die
    search_into(out, ("fp32", "int8-static"), "second", model, tokenizer, task)


if __name__ == "__main__":
    from tests import small_programs
    small_programs.install()  # as in the pytest process that starts this one
    main(sys.argv[1])
