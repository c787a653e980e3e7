"""Fault 7: one `Tokenizer` and one `Engine` called from many threads at once.

Engines share their tokenizer's HF backend; truncation used to be switched on that shared
backend per call, so with another thread truncating, a strict call measured an over-long row
cut short and returned it with `truncated=False`. Every threaded result must equal the
single-threaded one (or raise the same error).
"""

from __future__ import annotations

import concurrent.futures
import copy
import subprocess
import sys

import numpy as np
import pytest

import samp_jax
from samp_jax.models.tokenizer import Tokenizer
from tests.helpers import GOLDEN, ROOT

FOLDER = GOLDEN / "families" / "bert" / "seqcls"  # a tiny model with its own tokenizer
WORDS = "the quick brown fox jumps over lazy dogs while seven wizards quietly hum".split()
THREADS = 8
ROUNDS = 6


def _texts(seed: int, count: int = 6) -> list[str]:
    """Short and long rows mixed (2 to 40 words, the long ones past every limit below)."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice([2, 3, 5, 30, 40], size=count)
    return [" ".join(rng.choice(WORDS, size=n)) for n in lengths]


def _outcome(fn, *args):
    """What a call returns, or the error it raises (type and message), comparable with ==."""
    try:
        return ("ok", fn(*args))
    except ValueError as e:
        return ("error", type(e).__name__, str(e))


def _same(a, b) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "error":
        return a == b
    x, y = a[1], b[1]
    if isinstance(x, tuple):  # encode_words: (batch, word_ids)
        return _same(("ok", x[0]), ("ok", y[0])) and np.array_equal(x[1], y[1])
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    fields = ("lengths", "truncated", "logits", "labels")
    return all(np.array_equal(getattr(x, f), getattr(y, f)) for f in fields)


def _hammer(calls):
    """Runs every `(fn, args)` in `calls` single-threaded, then all at once from many threads
    (several rounds, shuffled), and asserts each threaded outcome equals its serial one."""
    expected = [_outcome(fn, *args) for fn, args in calls]
    rng = np.random.default_rng(0)
    order = [i for _ in range(ROUNDS) for i in rng.permutation(len(calls))]
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        got = list(pool.map(lambda i: (i, _outcome(calls[i][0], *calls[i][1])), order))
    wrong = [i for i, outcome in got if not _same(outcome, expected[i])]
    assert not wrong, f"{len(wrong)} of {len(got)} threaded calls differ from single-threaded ones"


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_pretrained(FOLDER, max_length=16)


@pytest.fixture(scope="module", autouse=True)
def _fast_switching():
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: races show up in a short test
    yield
    sys.setswitchinterval(previous)


@pytest.mark.parametrize("variant", ["texts", "pairs", "words"])
def test_tokenizer_calls_from_many_threads_match_single_threaded(tokenizer, variant):
    measuring = copy.copy(tokenizer)  # as an engine measures: a shallow copy, no length limit
    measuring.max_length = sys.maxsize
    calls = []
    for seed in range(8):
        texts = _texts(seed)
        if variant == "texts":
            calls += [(tokenizer, (texts,)),  # strict: over-long rows raise
                      (lambda t: tokenizer(t, padding=12, truncation=True), (texts,)),
                      (lambda t: tokenizer(t, truncation=True), (texts,)),
                      (measuring, (texts,))]
        elif variant == "pairs":
            pairs = _texts(seed + 100)
            calls += [(lambda t, p=pairs: tokenizer(t, p), (texts,)),
                      (lambda t, p=pairs: tokenizer(t, p, padding=12, truncation=True), (texts,)),
                      (lambda t, p=pairs: measuring(t, p), (texts,))]
        else:
            words = [t.split() for t in texts]
            calls += [(tokenizer.encode_words, (words,)),
                      (lambda w: tokenizer.encode_words(w, padding=12, truncation=True), (words,)),
                      (measuring.encode_words, (words,))]
    _hammer(calls)


@pytest.fixture(scope="module")
def engines(tokenizer):
    model = samp_jax.load(FOLDER, tokenizer=tokenizer)
    options = dict(seq_buckets=(16,), batch_size=4, batch_buckets=(4,))
    return (samp_jax.compile(model, truncate=False, **options),
            samp_jax.compile(model, truncate=True, **options))


@pytest.mark.parametrize("variant", ["strict_and_truncating", "one_engine"])
def test_engines_sharing_a_tokenizer_from_many_threads(engines, variant):
    strict, truncating = engines
    used = (strict, truncating) if variant == "strict_and_truncating" else (truncating,)
    before = sum(truncating.bucket_calls.values())
    calls = [(engine, (_texts(seed),)) for seed in range(10) for engine in used]
    calls += [(engine, ([text],)) for text in _texts(99, 6) for engine in used]
    _hammer(calls)
    long_strict = [args for fn, args in calls if fn is strict and max(len(t.split()) for t in args[0]) >= 30]
    assert all(_outcome(strict, *args)[0] == "error" for args in long_strict)  # never cut silently
    # bucket_calls is updated under a lock: no increment lost (serial pass + threaded rounds)
    runs = sum(1 for fn, args in calls if fn is truncating)
    assert sum(truncating.bucket_calls.values()) - before >= runs * (ROUNDS + 1)


FIRST_USE = """
import sys, threading
import samp_jax
names = sys.argv[1:]
barrier = threading.Barrier(len(names))
errors = []
def touch(name):
    barrier.wait()
    try:
        getattr(samp_jax, name)
    except BaseException as e:
        errors.append(f"{name}: {type(e).__name__}: {e}")
threads = [threading.Thread(target=touch, args=(name,)) for name in names]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("\\n".join(errors))
"""


def test_threads_using_the_library_first_at_the_same_moment_all_get_their_names():
    """A fresh process (the names load on first use), one thread per public name, released
    together: each gets its name. Without the first-use lock, `load` and `quantize` (modules
    that import each other) fail with ImportError in nearly every run."""
    names = ["load", "quantize", "compile", "Tokenizer", "PrecisionMap", "evaluate", "ptq"]
    done = subprocess.run([sys.executable, "-c", FIRST_USE, *names], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""
