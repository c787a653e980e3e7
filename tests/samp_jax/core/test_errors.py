"""`SampJaxError`: every exception class the project defines derives from it, and keeps the
builtin base it had."""

from __future__ import annotations

import importlib
import inspect
import json
import pickle
import subprocess
import sys

import pytest

import samp_jax
from samp_jax.core.errors import SampJaxError
from tests.helpers import ROOT
from tests.test_architecture import module_name, project_files

# Exception classes of the project that are deliberately not SampJaxErrors, and why. Warnings
# are left out by kind (they are warned, not raised): see `project_exceptions`.
NOT_SAMP_JAX_ERRORS = {
    # SIGTERM raised as a KeyboardInterrupt: like Ctrl-C it must pass every `except Exception`
    "samp_jax.app.entry.Terminated",
    # The kernel package needs jax and numpy only and knows nothing of samp_jax
    # (tests/test_architecture.py). Neither error is about a user's input: a
    # NoImplementationError is the NotImplementedError that samp_jax's GEMM dispatch catches
    # to try the next implementation; a TunedTableError is a damaged tuning table shipped in
    # the package (or written by a developer's sweep into a checkout).
    "pallas_kernels.int8_matmul.base.NoImplementationError",
    "pallas_kernels.int8_matmul.base.TunedTableError",
}


def project_exceptions() -> dict[str, type]:
    """Every exception class (not a warning) defined at the top level of a project module,
    by its dotted name: each module imported (`__main__`, which runs the CLI, aside)."""
    found = {}
    for path in project_files():
        if path.name == "__main__.py":
            continue
        module = importlib.import_module(module_name(path))
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and not issubclass(value, Warning) and value.__module__ == module.__name__):
                found[f"{module.__name__}.{name}"] = value
    return found


@pytest.fixture(scope="module")
def exceptions() -> dict[str, type]:
    return project_exceptions()


def test_every_exception_class_of_the_project_is_a_samp_jax_error(exceptions):
    assert len(exceptions) >= 20, sorted(exceptions)  # the walk found them, not nothing
    missing = sorted(name for name, cls in exceptions.items()
                     if not issubclass(cls, SampJaxError) and name not in NOT_SAMP_JAX_ERRORS)
    assert missing == [], f"derive these from samp_jax.core.errors.SampJaxError: {missing}"
    assert NOT_SAMP_JAX_ERRORS <= set(exceptions), "a name in NOT_SAMP_JAX_ERRORS is gone"
    assert not any(issubclass(exceptions[name], SampJaxError) for name in NOT_SAMP_JAX_ERRORS)


@pytest.mark.parametrize("name, builtin", [
    ("samp_jax.core.precision.PrecisionMapError", ValueError),
    ("samp_jax.models.errors.CheckpointError", ValueError),
    ("samp_jax.models.errors.ConfigError", ValueError),
    ("samp_jax.models.families.UnsupportedFamilyError", ValueError),
    ("samp_jax.tasks.columns.ColumnNotFound", ValueError),
    ("samp_jax.app.predictions.NoFiniteOutputs", ValueError),
    ("samp_jax.app.outputs.UsageError", ValueError),
    ("calibrate.calibration.api.CalibrationError", ValueError),
    ("samp_jax.core.strict_json.BeyondReader", json.JSONDecodeError),
    ("samp_jax.ptq.folder.FolderChanged", FileNotFoundError),
    ("samp_jax.app.outputs.StdoutError", OSError),
    ("samp_jax.core.assets.AssetError", RuntimeError),
    ("samp_jax.core.assets.NoCacheFolderError", RuntimeError),
    ("samp_jax.serving.rendezvous.JoinError", RuntimeError),
    ("samp_jax.serving.distributed.DistributedMismatchError", RuntimeError),
])
def test_the_builtin_base_is_kept(exceptions, name, builtin):
    cls = exceptions[name]
    assert issubclass(cls, builtin) and issubclass(cls, SampJaxError)


def test_errors_raised_with_their_own_arguments_are_caught_both_ways():
    from samp_jax.app.outputs import StdoutError
    from samp_jax.core.strict_json import BeyondReader
    from samp_jax.models.errors import CheckpointError

    error = StdoutError(28, "No space left on device")
    assert error.errno == 28 and str(error).endswith("(No space left on device)")
    beyond = pickle.loads(pickle.dumps(BeyondReader("JSON nested deeper than Python reads")))
    assert isinstance(beyond, json.JSONDecodeError) and isinstance(beyond, SampJaxError)
    with pytest.raises(SampJaxError, match="missing keys"):
        raise CheckpointError("model.safetensors", missing=["pooler.dense.weight"])
    with pytest.raises(ValueError, match="is not one of"):  # as `except ValueError` caught it
        samp_jax.PrecisionMap.from_dict({"num_layers": 2, "default": {"precision": "fp9"}})
    with pytest.raises(samp_jax.SampJaxError, match="is not one of"):
        samp_jax.PrecisionMap.from_dict({"num_layers": 2, "default": {"precision": "fp9"}})


def test_the_base_is_public_and_loads_no_jax():
    code = ("import sys, samp_jax, samp_jax.core\n"
            "from samp_jax.core.errors import SampJaxError\n"
            "assert samp_jax.SampJaxError is SampJaxError is samp_jax.core.SampJaxError\n"
            "assert 'SampJaxError' in samp_jax.__all__\n"
            "assert 'jax' not in sys.modules, 'jax loaded'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)
