"""tools/scorer_check.py: the two-logit classifier collapsed to one output scores every row
with its positive logit minus its negative one, and its splits are written with 0/1 labels."""

import csv
import importlib.util
import sys

import numpy as np

import samp_jax as sj
from tests.helpers import ROOT, tiny_classifier

spec = importlib.util.spec_from_file_location("scorer_check", ROOT / "tools" / "scorer_check.py")
scorer_check = importlib.util.module_from_spec(spec)
sys.modules["scorer_check"] = scorer_check
spec.loader.exec_module(scorer_check)


def test_the_collapsed_head_scores_the_logit_margin(tmp_path, minilm_dir):
    model = tiny_classifier()
    folder = scorer_check.write_scorer(model, tmp_path / "scorer", ("negative", "positive"))
    scorer = sj.load(folder)
    tokenizer = sj.Tokenizer.from_pretrained(folder)
    batch = tokenizer(["a fine film", "a dull day at the river", "bad"])
    logits = np.asarray(model(**batch))
    np.testing.assert_allclose(np.asarray(scorer(**batch))[:, 0], logits[:, 1] - logits[:, 0],
                               atol=1e-6)


def test_the_splits_are_written_with_0_1_labels(tmp_path):
    examples = [{"text": f"row {i}", "label": ("negative", "positive")[i % 3 == 0]}
                for i in range(30)]
    task = sj.tasks.load_task(examples, sizes={"calibration": 4, "search": 4, "test": 4})
    files = scorer_check.write_splits(tmp_path, task)
    for split, path in files.items():
        rows = list(csv.DictReader(open(path)))
        want = [{"text": e["text"], "label": str(int(task.labels[e["label"]] == "positive"))}
                for e in task.split(split)]
        assert rows == want and {r["label"] for r in rows} <= {"0", "1"}
