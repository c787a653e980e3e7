"""`samp-jax predict | eval | finetune --model ADAPTER_DIR` on PEFT LoRA adapter folders (the
goldens tools/golden_peft.py writes over the tiny family checkpoints)."""

import json

import numpy as np
import pytest

import samp_jax
from samp_jax.app.cli import main
from tests.helpers import GOLDEN

PEFT_GOLDEN = GOLDEN / "peft"
BERT_BASE = GOLDEN / "families" / "bert" / "base"


def test_cli_predict_and_eval_on_an_adapter_folder(tmp_path, capsys):
    texts = json.loads((GOLDEN / "families" / "bert" / "texts.json").read_text())["single"]
    data = tmp_path / "rows.csv"
    labels = ["LABEL_0", "LABEL_1", "LABEL_2"]
    data.write_text("text,label\n" + "".join(f"\"{t}\",{labels[i % 3]}\n" for i, t in enumerate(texts)))
    out = tmp_path / "p.jsonl"
    code = main(["predict", "--model", str(PEFT_GOLDEN / "bert_seqcls"), "--data", str(data),
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    model = samp_jax.load(PEFT_GOLDEN / "bert_seqcls")
    encoded = model.tokenizer(texts, truncation=True)
    expected = np.asarray(model(encoded["input_ids"], encoded["attention_mask"],
                                encoded["token_type_ids"])).argmax(-1)
    assert [row["label"] for row in rows] == [labels[i] for i in expected]
    code = main(["eval", "--model", str(PEFT_GOLDEN / "bert_seqcls"), "--data", str(data),
                 "--precision", "fp16", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert [row["variant"] for row in result["rows"]] == ["fp32 (reference)", "fp16"]
    # a tagger whose adapter names a hub model: --base-model gives the base
    tags, words = tmp_path / "tags.jsonl", _words(tmp_path, texts)
    assert main(["predict", "--model", str(PEFT_GOLDEN / "bert_tokcls_rslora"), "--base-model",
                 str(BERT_BASE), "--data", str(words), "--out", str(tags)]) == 0, capsys.readouterr().err
    first = json.loads(tags.read_text().splitlines()[0])
    assert len(first["tags"]) == len(first["tokens"]) and set(first["tags"]) <= {f"LABEL_{i}" for i in range(5)}
    code = main(["predict", "--model", str(PEFT_GOLDEN / "bert_tokcls_rslora"), "--data", str(words),
                 "--out", str(tmp_path / "refused.jsonl")])
    assert code != 0 and "--base-model DIR" in capsys.readouterr().err


def _words(tmp_path, texts):
    file = tmp_path / "words.jsonl"
    file.write_text("".join(json.dumps({"tokens": text.split()}) + "\n" for text in texts))
    return file


@pytest.mark.slow  # a fine-tuning run, end to end
def test_cli_finetune_of_an_adapter_folder_saves_the_bases_tokenizer(tmp_path, capsys):
    texts = json.loads((GOLDEN / "families" / "bert" / "texts.json").read_text())["single"]
    data = tmp_path / "rows.csv"
    data.write_text("text,label\n" + "".join(f"\"{t}\",LABEL_{i % 3}\n" for i, t in enumerate(texts * 4)))
    code = main(["finetune", "--model", str(PEFT_GOLDEN / "bert_seqcls"), "--data", str(data),
                 "--out", str(tmp_path / "tuned"), "--min-steps", "2"])
    assert code == 0, capsys.readouterr().err
    tuned = samp_jax.load(tmp_path / "tuned")  # the adapter folder has no tokenizer: the base's
    assert tuned.labels == ("LABEL_0", "LABEL_1", "LABEL_2") and tuned.tokenizer is not None
