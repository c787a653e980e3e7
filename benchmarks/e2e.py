"""End-to-end benchmark (the GPU headline): samp-jax precisions vs HF transformers on PyTorch.

Usage (GPU):  PYTHONPATH=. python benchmarks/e2e.py --minilm /path/to/minilm-fp16
              → benchmarks/results/<device>-e2e.json and -e2e.png
CPU smoke:    python benchmarks/e2e.py --quick --out /tmp/e2e.json
Same as `samp-jax bench`; see `samp_jax.app.bench` for the contenders and the timing method.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samp_jax.app.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
