"""Shared fixtures: the real MiniLM (fetched once into the asset cache) and golden files.

Markers (registered in pyproject.toml): `slow` (minutes, processes, whole workflows;
`make test-fast` skips them) and
`gpu` (needs a GPU; skipped without one).
"""

import contextlib
import json
import os

# GPU interpret mode runs each simulated warpgroup as its own XLA:CPU program, whose barrier
# waits block inside host callbacks. XLA:CPU's concurrency-optimized scheduler lets a program
# run such callbacks on the intra-op thread pool (one thread per core): on a 2-core machine two
# blocked warpgroups fill it and the one they wait for never runs (as in the warp-specialized
# INT8 GEMM with a residual whose dtype differs from its output's). Without it the callbacks run
# on the calling thread. Set before JAX creates its CPU client, which reads XLA_FLAGS once.
#
# Small programs (a tiny model's; tests/small_programs.py) compile at XLA's backend optimization
# level 0, the others (the real MiniLM's) at XLA's default, 3: on a 2-core CPU from an empty
# cache, the whole suite took 2,286 s against 2,776 s with every program at level 3, the same
# day; with a warm cache the fast tests took 529 s against 501 s (nothing compiles, tiny
# programs run at half speed). Level 0 for every program had lost where programs run long:
# tests/samp_jax/tasks/test_tasks.py (fine-tuning steps) 105 vs 81 s, the fast tests with a
# warm cache 511 vs 471 s.
# A level in XLA_FLAGS applies to the programs that are not small.
TEST_XLA_FLAGS = ("--xla_cpu_enable_concurrency_optimized_scheduler=false",)
os.environ["XLA_FLAGS"] = " ".join(filter(None, (os.environ.get("XLA_FLAGS"),) + TEST_XLA_FLAGS))

import tempfile  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from samp_jax import load_pretrained  # noqa: E402
from samp_jax.core.assets import minilm_path  # noqa: E402
from tests import small_programs  # noqa: E402
from tests.helpers import GOLDEN  # noqa: E402

# Many tests build the same small programs (one tiny config, a few shapes). JAX's persistent
# compilation cache lets every pytest process reuse what another compiled: the tests run the
# same executables, compiled once. $SAMP_JAX_TEST_XLA_CACHE names the folder; "off" disables it.
# A loaded program still counts as a compilation for `CompileCounter`
# (tests/samp_jax/serving/test_engine.py checks it).
TEST_XLA_CACHE = os.environ.get("SAMP_JAX_TEST_XLA_CACHE") or os.path.join(
    tempfile.gettempdir(), f"samp_jax_test_xla_cache_{os.getuid()}")
# The samp-jax commands a test starts in a process of its own use it too, not the user's.
os.environ["SAMP_JAX_XLA_CACHE"] = TEST_XLA_CACHE
small_programs.install()
if TEST_XLA_CACHE != "off":
    jax.config.update("jax_compilation_cache_dir", TEST_XLA_CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


# The test files that take longest (fresh processes, whole workflows, simulated devices), run
# first. `make test` hands whole files to its two workers in collection order (pytest-xdist's
# loadfile with --no-loadscope-reorder; by default xdist starts the files with the most tests
# first), so a long file of few tests (tests/test_examples.py) kept one worker busy for minutes
# after the other had run out of files. Started first, the long files overlap the many short
# ones. Paths from the project root; tests/test_suite_order.py checks
# that each exists.
LONGEST_FIRST = (
    "tests/test_examples.py",
    "tests/benchmarks/test_gpu_check.py",
    "tests/samp_jax/serving/test_distributed.py",
    "tests/samp_jax/serving/test_families.py",
    "tests/samp_jax/app/test_families_cli.py",
    "tests/test_packaging.py",
    "tests/samp_jax/serving/test_sharding.py",
    "tests/samp_jax/ops/test_pallas.py",
)


def _file_rank(item) -> int:
    """An item's place in `LONGEST_FIRST`, or after all of them."""
    path = item.nodeid.split("::", 1)[0]
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_file_rank)  # stable: the order within a file and among the rest is kept
    if jax.default_backend() == "gpu":
        return
    skip = pytest.mark.skip(reason=f"needs a GPU; this run's JAX backend is {jax.default_backend()}")
    for item in items:
        # the marker itself: `"gpu" in item.keywords` also matched a checkout in a folder named
        # gpu (keywords hold the names of the folders above), which skipped every test
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def mosaic_races(monkeypatch):
    """Every Mosaic GPU kernel a test runs in interpret mode runs with the interpreter's race
    detector on (`pallas_kernels.int8_matmul.base.detect_races`), and a race it finds fails
    the test. The detector does not raise: it prints "RACE DETECTED" and sets `races_found` of
    the kernel's race-detection state, a fresh one per kernel; this fixture keeps every state
    created during the test (the list it yields) and checks them all afterwards. A test that
    plants a race asserts it was found, then clears the list."""
    from jax._src.pallas.mosaic_gpu.interpret import gpu_callbacks

    from pallas_kernels.int8_matmul import base
    states, state_type = [], gpu_callbacks.GPURaceDetectionState

    def recorded(*args, **kwargs):
        states.append(state_type(*args, **kwargs))
        return states[-1]
    monkeypatch.setattr(gpu_callbacks, "GPURaceDetectionState", recorded)
    with base.detect_races():
        yield states
    if states:
        jax.effects_barrier()  # kernels still running finish their checks
    if found := sum(state.races_found for state in states):
        pytest.fail(f"the Mosaic GPU interpreter detected races in {found} of the {len(states)} "
                    "kernels this test ran (see 'RACE DETECTED' in its captured output)")


@pytest.fixture(scope="session")
def minilm_dir():
    return minilm_path()


@pytest.fixture(scope="session")
def minilm(minilm_dir):
    """The real all-MiniLM-L6-v2 in FP32 with its sentence-embedding head."""
    return load_pretrained(minilm_dir)


@pytest.fixture(scope="session")
def minilm_golden():
    return dict(np.load(GOLDEN / "minilm.npz"))


@pytest.fixture(scope="session")
def minilm_texts():
    return json.loads((GOLDEN / "minilm_texts.json").read_text())


@pytest.fixture
def file_size_limit():
    """Sets this process's soft file-size limit (`ulimit -f`) for a block; put back after.
    Python ignores SIGXFSZ, so a write past it fails with EFBIG instead of killing pytest."""
    resource = pytest.importorskip("resource")
    old = resource.getrlimit(resource.RLIMIT_FSIZE)

    @contextlib.contextmanager
    def limited(soft: int):
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, old[1]))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, old)
    return limited
