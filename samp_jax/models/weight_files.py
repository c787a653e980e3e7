"""What the checkpoint and sentence-transformers readers share about weight files: their names,
reading safetensors files, and the checks every float tensor passes before it is used."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from safetensors import SafetensorError, safe_open

from samp_jax.core.input_files import check_regular
from samp_jax.models.errors import CheckpointError

SAFETENSORS = "model.safetensors"
TORCH_PICKLE = "pytorch_model.bin"


def read_safetensors(files: Sequence[Path]) -> dict[str, np.ndarray]:
    """Every tensor of the safetensors `files` (shards of one checkpoint), by name.

    Raises:
      FileNotFoundError: a file is missing.
      CheckpointError: a file is truncated or not safetensors at all.
    """
    state = {}
    for file in files:
        if not check_regular(file):  # a FIFO or a device is refused, named
            raise FileNotFoundError(f"safetensors shard {file} is missing")
        # framework="flax" reads bfloat16 too, which numpy alone cannot.
        try:
            with safe_open(str(file), framework="flax") as f:
                for key in f.keys():
                    state[key] = np.asarray(f.get_tensor(key))
        except SafetensorError as e:
            raise CheckpointError(file, problem=f"is not a readable safetensors file ({e})") from None
    return state


def check_float_weight(path: Path, key: str, value: np.ndarray) -> None:
    """Refuses a weight that is not a float tensor of finite values.

    Raises:
      CheckpointError: naming `path` and the tensor `key`.
    """
    # jnp.issubdtype, not np's: bfloat16 / float8 (ml_dtypes) are floats too
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise CheckpointError(path, problem=f"tensor {key} has dtype {value.dtype}, expected a float "
                              "dtype (float32, float16 or bfloat16)")
    if not np.all(np.isfinite(value)):
        raise CheckpointError(path, problem=f"tensor {key} has non-finite values (NaN or Inf), "
                              "expected finite")
