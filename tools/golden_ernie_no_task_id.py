"""Golden outputs of an ERNIE checkpoint that stores a task-type table under a config with
`use_task_id: false`, from HF's own classes (golden venv):

    .golden-venv/bin/python tools/golden_ernie_no_task_id.py --out tests/golden/families/ernie

Over the ERNIE family golden that `tools/make_golden.py --family ernie` wrote: its `seqcls`
checkpoint (which holds `task_type_embeddings`) with `use_task_id` set false in a copy of its
config, loaded by `ErnieForSequenceClassification.from_pretrained`, which builds no table and
leaves the stored one unused. `OUT/no_task_id.npz` holds its last hidden states and logits on
the golden's pair batch (`pair_hidden`, `pair_seq_logits`; the inputs are `golden.npz`'s
`pair_*`) and the keys HF reported as not used (`unexpected_keys`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the ERNIE family golden folder")
    args = parser.parse_args()
    golden = np.load(args.out / "golden.npz")
    with tempfile.TemporaryDirectory() as work:
        folder = Path(shutil.copytree(args.out / "seqcls", Path(work) / "seqcls"))
        config = json.loads((folder / "config.json").read_text())
        assert config["use_task_id"] is True, config
        (folder / "config.json").write_text(json.dumps(config | {"use_task_id": False}))
        model, info = transformers.ErnieForSequenceClassification.from_pretrained(
            folder, output_loading_info=True)
    model.eval()
    assert not hasattr(model.ernie.embeddings, "task_type_embeddings")
    assert info["unexpected_keys"] == ["ernie.embeddings.task_type_embeddings.weight"], info
    inputs = {key: torch.from_numpy(golden[f"pair_{key}"]).long()
              for key in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    logits = out.logits.numpy().astype(np.float32)
    # the table, unused, moves the outputs: the golden's own logits (with row 0 added) differ
    assert np.abs(logits - golden["pair_seq_logits"]).max() > 1e-3
    np.savez_compressed(args.out / "no_task_id.npz",
                        pair_hidden=out.hidden_states[-1].numpy().astype(np.float32),
                        pair_seq_logits=logits,
                        unexpected_keys=np.array(info["unexpected_keys"]))
    print(f"ernie without use_task_id: |logits| {np.abs(logits).max():.3f}; transformers "
          f"{transformers.__version__}")


if __name__ == "__main__":
    main()
