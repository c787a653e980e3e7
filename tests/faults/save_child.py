"""Re-saves a tiny quantized model (seed from argv) over a folder forever; the parent kills it.

    python -m tests.faults.save_child FOLDER SEED
"""

import sys

from flax import nnx

from samp_jax import EncoderModel, PrecisionMap, quantize
from samp_jax.models import make_head
from tests.helpers import TINY_CONFIG


def model(seed: int):
    rngs = nnx.Rngs(seed)
    float_model = EncoderModel(TINY_CONFIG, make_head("sequence_classification", TINY_CONFIG,
                                                      num_labels=3, rngs=rngs), rngs=rngs)
    return quantize(float_model, PrecisionMap.preset("fully_quant", TINY_CONFIG.num_layers))


if __name__ == "__main__":
    folder, seed = sys.argv[1], int(sys.argv[2])
    q = model(seed)
    print("ready", flush=True)
    while True:
        q.save(folder)
