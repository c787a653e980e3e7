"""Every family on 8 simulated CPU devices against one device, in one process.

`tests/samp_jax/serving/test_families.py` runs it in a subprocess (pytest's process has one CPU
device):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \\
        python -m tests.samp_jax.serving.families_sharding_worker OUT_DIR

For each family: a tiny random model with its sequence head, fully-INT8 (static), on 19 ragged
rows (padded to 24 inside); for the families whose attention or positions run code of their own
(`FLOAT_FAMILIES`), the float model too. The INT8 model runs every float op the float one does
(embeddings, attention, norms, head) besides its INT8 sites, so the float variant of the other
families would compile the same per-row code again. Writes OUT_DIR/results.npz with
`{family}_{variant}_sharded` and `..._single` logits.
"""

import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from calibrate import calibrate
from samp_jax import EncoderModel, PrecisionMap, quantize
from samp_jax.models import make_head
from samp_jax.serving.forward import jit_forward
from samp_jax.serving.sharding import data_mesh, sharded_forward
from tests.helpers import FAMILY_CONFIGS, family_batches, family_head_spec


# BERT's absolute positions, MPNet's relative bias, ModernBERT's rotary and local windows,
# DeBERTa's disentangled relative terms
FLOAT_FAMILIES = ("bert", "mpnet", "modernbert", "deberta-v2")


def main(out: Path) -> None:
    assert jax.device_count() == 8, jax.devices()
    mesh = data_mesh()
    arrays = {}
    for model_type, config in FAMILY_CONFIGS.items():
        rngs = nnx.Rngs(0)
        model = EncoderModel(config, make_head("sequence_classification", config, num_labels=3,
                                               rngs=rngs, **family_head_spec(model_type)), rngs=rngs)
        batches = family_batches(config, 3, rows=19)
        calibration = calibrate(model, batches[:2])
        quantized = quantize(model, PrecisionMap.preset("fully_quant", config.num_layers,
                                                        activation="per_tensor_static"), calibration)
        variants = (("fp32", model),) if model_type in FLOAT_FAMILIES else ()
        for variant, m in variants + (("int8", quantized),):
            arrays[f"{model_type}_{variant}_sharded"] = np.asarray(sharded_forward(m, mesh)(batches[2]))
            arrays[f"{model_type}_{variant}_single"] = np.asarray(jit_forward(m)(batches[2]))
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "results.npz", **arrays)


if __name__ == "__main__":
    from tests import small_programs
    small_programs.install()  # as in the pytest process that starts this one
    main(Path(sys.argv[1]))
