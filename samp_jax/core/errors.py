"""`SampJaxError`: the one base of the exceptions samp-jax defines, so that a caller can catch
them all (`except samp_jax.SampJaxError:`). Standard library only, so that every floor that
defines an error can import it, and importing it loads no JAX."""

from __future__ import annotations


class SampJaxError(Exception):
    """The base of every exception class samp-jax defines and raises on purpose: a malformed
    precision map (`PrecisionMapError`), a checkpoint or config it cannot read
    (`CheckpointError`, `ConfigError`), data it cannot use (`ColumnNotFound`,
    `CalibrationError`, `LabelMismatch`), outputs that are all NaN (`NoFiniteOutputs`), an asset
    it cannot fetch (`AssetError`), a distributed run that cannot meet (`JoinError`), and so on.

    Each class keeps the builtin base it had too (`class PrecisionMapError(SampJaxError,
    ValueError)`), so `except ValueError:`, `except OSError:` or `except RuntimeError:` still
    catch what they caught before.

    Not covered:
      - builtin exceptions raised as they are, for most argument checks and bad input
        (`ValueError("batch_size=0 ...")`, `TypeError`, `FileNotFoundError` for a missing
        file): catch `(SampJaxError, ValueError, OSError)` to catch those too;
      - errors of the libraries samp-jax calls (JAX and XLA, tokenizers, safetensors), which
        pass through unchanged;
      - the kernel package's own errors (`pallas_kernels.int8_matmul.NoImplementationError`, a
        `NotImplementedError` the GEMM dispatch catches to fall back to XLA; `TunedTableError`,
        a damaged shipped tuning table): `pallas_kernels` depends on JAX alone and knows
        nothing of samp_jax;
      - warnings (`SidecarNotSealedWarning` is a `UserWarning`) and the CLI's `Terminated`, a
        `KeyboardInterrupt` (SIGTERM) that no `except Exception` may catch.
    """
