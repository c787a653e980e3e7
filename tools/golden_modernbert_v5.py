"""ModernBERT configs as transformers 5 writes them, with transformers 5's own outputs
(tests/golden/families/modernbert/transformers5).

transformers 5 saves a ModernBERT config with `rope_parameters` (a RoPE dict per attention type)
and `layer_types` (each layer's attention) in place of 4.57's `global_rope_theta`,
`local_rope_theta` and `global_attn_every_n_layers`; `layer_types` also states patterns no
`global_attn_every_n_layers` gives. Over the golden `seqcls` folder's weights (written by
`tools/golden_modernbert.py`), this writes two `config.json` files and the logits transformers 5
computes with each on the golden batches:
- `resaved/`: the golden config loaded and saved again by transformers 5 (the same model);
- `irregular/`: layers (sliding, full, full), which 4.57 cannot state, and RoPE bases 500
  (full) and 20 (sliding), neither the golden's 1000 and 10.

Runs with torch (the golden venv) and transformers 5 on PYTHONPATH (tools/make_golden.sh):
  PYTHONPATH=.golden-venv/transformers5 .golden-venv/bin/python tools/golden_modernbert_v5.py
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import transformers

FULL, SLIDING = "full_attention", "sliding_attention"
VARIANTS = {
    "resaved": {},
    "irregular": {"layer_types": [SLIDING, FULL, FULL],
                  "rope_parameters": {FULL: {"rope_type": "default", "rope_theta": 500.0},
                                      SLIDING: {"rope_type": "default", "rope_theta": 20.0}}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", type=Path, default=Path("tests/golden/families/modernbert"))
    args = parser.parse_args()
    major = int(transformers.__version__.split(".")[0])
    assert major >= 5, f"needs transformers 5 on PYTHONPATH, found {transformers.__version__}"
    source, out = args.golden / "seqcls", args.golden / "transformers5"
    batches = dict(np.load(args.golden / "golden.npz"))
    arrays = {}
    for name, changes in VARIANTS.items():
        config = transformers.AutoConfig.from_pretrained(source)
        for key, value in changes.items():
            setattr(config, key, value)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            source, config=config, attn_implementation="eager", dtype=torch.float32).eval()
        (out / name).mkdir(parents=True, exist_ok=True)
        model.config.save_pretrained(out / name)
        written = json.loads((out / name / "config.json").read_text())
        assert "layer_types" in written and "rope_parameters" in written, written
        for batch in ("single", "pair"):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor(batches[f"{batch}_input_ids"]),
                               attention_mask=torch.tensor(batches[f"{batch}_attention_mask"])).logits
            arrays[f"{name}_{batch}_logits"] = logits.numpy()
    np.savez_compressed(out / "golden.npz", **arrays)
    print(f"wrote {out} with transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
