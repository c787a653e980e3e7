"""An FP16 copy of all-MiniLM-L6-v2 (about 45 MB, half the FP32 size), small enough to carry to
a GPU machine that cannot download it: the asset's folder with `model.safetensors` in float16.

Usage: PYTHONPATH=. python benchmarks/minilm_fp16.py --out .carry/minilm-fp16
Then:  samp-jax bench --models minilm --minilm .carry/minilm-fp16 (or benchmarks/gpu_check.sh
with MINILM=.carry/minilm-fp16).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from samp_jax.core.assets import minilm_path
from samp_jax.core.atomic import atomic_folder

WEIGHTS = "model.safetensors"


def write_fp16_copy(source: Path, out: Path) -> Path:
    """Copies the checkpoint folder `source` to `out` with its float tensors stored as float16.

    Raises:
      FileNotFoundError: `source` has no model.safetensors.
    """
    weights = source / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: --source must be an HF checkpoint folder")
    tensors = {key: value.astype(np.float16) if np.issubdtype(value.dtype, np.floating) else value
               for key, value in load_file(str(weights)).items()}
    with atomic_folder(out) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(WEIGHTS))
        save_file(tensors, str(Path(tmp) / WEIGHTS))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    parser.add_argument("--source", type=Path, default=None, help="default: the MiniLM asset")
    args = parser.parse_args(argv)
    try:
        out = write_fp16_copy(args.source or minilm_path(), args.out)
    except (FileNotFoundError, FileExistsError) as e:
        print(f"minilm_fp16: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
