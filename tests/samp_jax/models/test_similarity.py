"""A sentence embedder's similarity (sentence-transformers' `similarity_fn_name`): read from
its folder, kept through float and quantized saves, used to score pairs by the evaluations
(`eval`, `search`) and by `predict` on a file of pairs."""

import json
import shutil

import numpy as np
import pytest

import samp_jax as sj
from samp_jax import ConfigError, PrecisionMap, quantize
from samp_jax.app import predictions
from samp_jax.models.similarity import (SIMILARITIES, SIMILARITY_FILE, pair_similarity,
                                        read_similarity, similarity_of)
from samp_jax.tasks.evaluation import EmbeddingEvaluation
from samp_jax.tasks.proxies import COSINE, EMBEDDING_CHANGE
from samp_jax.tasks.metrics import get_metric

A = np.array([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0], [1.0, 0.0, 0.0]], np.float32)
B = np.array([[2.0, 4.0, 4.0], [4.0, 3.0, 0.0], [0.0, 0.0, 0.0]], np.float32)


def test_each_similarity_is_sentence_transformers_definition():
    np.testing.assert_allclose(pair_similarity("cosine", A, B), [1.0, 9 / 25, 0.0], atol=1e-7)
    np.testing.assert_allclose(pair_similarity("dot", A, B), [18.0, 9.0, 0.0])
    np.testing.assert_allclose(pair_similarity("euclidean", A, B),
                               [-3.0, -np.sqrt(32.0), -1.0], rtol=1e-6)
    np.testing.assert_allclose(pair_similarity("manhattan", A, B), [-5.0, -8.0, -1.0])
    assert sorted(SIMILARITIES) == ["cosine", "dot", "euclidean", "manhattan"]


def _dot_folder(minilm_dir, tmp_path, name="dot"):
    """MiniLM without its Normalize module, declaring `similarity_fn_name` `name`."""
    folder = tmp_path / "dot"
    shutil.copytree(minilm_dir, folder)
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps([m for m in modules
                                                     if not m["type"].endswith("Normalize")]))
    config = folder / SIMILARITY_FILE
    stated = json.loads(config.read_text()) if config.is_file() else {}
    config.write_text(json.dumps(stated | {"similarity_fn_name": name}))
    return folder


def test_the_folders_similarity_travels_through_float_and_quantized_saves(minilm_dir, tmp_path):
    assert read_similarity(minilm_dir) == "cosine" and similarity_of(sj.load(minilm_dir)) == "cosine"
    model = sj.load(_dot_folder(minilm_dir, tmp_path))
    assert model.head.similarity == "dot" and model.head.normalize is False
    sj.save_pretrained(model, tmp_path / "float")
    assert json.loads((tmp_path / "float" / SIMILARITY_FILE).read_text())["similarity_fn_name"] == "dot"
    assert similarity_of(sj.load(tmp_path / "float")) == "dot"
    q = quantize(model, PrecisionMap.preset("fully_quant", model.config.num_layers))
    q.save(tmp_path / "q")
    assert similarity_of(q) == "dot" and similarity_of(sj.load(tmp_path / "q")) == "dot"


def test_a_similarity_samp_jax_does_not_compute_is_refused_naming_the_file(minilm_dir, tmp_path):
    folder = _dot_folder(minilm_dir, tmp_path, name="angle")
    with pytest.raises(ConfigError, match=rf"{SIMILARITY_FILE}: similarity_fn_name='angle' is "
                                          r"not a similarity .* \['cosine', 'dot', 'euclidean'"):
        sj.load(folder)


def test_pairs_are_ranked_by_the_models_similarity(minilm_dir):
    """Dot products score these pairs otherwise than cosines: the evaluation's pair scores,
    which its metric ranks, follow the similarity it was given."""
    texts = ["a", "b", "c", "d", "e", "f"]
    examples = [{"text": t, "text_pair": u, "score": s}
                for t, u, s in (("a", "b", 1.0), ("c", "d", 2.0), ("e", "f", 3.0))]
    embeddings = {t: e for t, e in zip(texts, np.array(
        [[1, 0], [1, 0], [3, 0], [0, 3], [1, 1], [1, 0.5]], np.float32))}
    tokenizer = sj.Tokenizer.from_pretrained(minilm_dir)
    scores = {}
    for name in ("cosine", "dot"):
        evaluation = EmbeddingEvaluation(tokenizer, examples, metric=get_metric("spearman"),
                                         similarity=name)
        outputs = [np.stack([embeddings[evaluation.texts[i]] for i in rows])
                   for rows in evaluation._rows]  # each batch's rows, as the model gives them
        scores[name] = evaluation.pair_scores(outputs)
    np.testing.assert_allclose(scores["cosine"], [1.0, 0.0, 3 / np.sqrt(10)], rtol=1e-6)
    np.testing.assert_allclose(scores["dot"], [1.0, 0.0, 1.5])
    with pytest.raises(ValueError, match="similarity='angle' is not a similarity"):
        EmbeddingEvaluation(tokenizer, examples, metric=None, similarity="angle")


def test_predict_scores_an_embedders_pairs_by_its_similarity(minilm_dir, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"text": a, "text_pair": b}) + "\n" for a, b in (
        ("A man is playing a guitar.", "Someone plays an instrument."),
        ("A dog runs in the park.", "The stock market fell today."))))
    rows = predictions.read_model_inputs(data, predictions.Columns(), head="sentence_embedding")
    for folder in (minilm_dir, _dot_folder(minilm_dir, tmp_path)):
        model = sj.load(folder)
        records = predictions.records(model, rows)
        assert [r["text_pair"] for r in records] == [r["text_pair"] for r in rows]
        first = np.array([r["embedding"] for r in records])
        second = np.array([r["embedding_pair"] for r in records])
        expected = pair_similarity(similarity_of(model), first, second)  # of rounded embeddings
        np.testing.assert_allclose([r["similarity"] for r in records], expected, rtol=1e-5)
        assert records[0]["similarity"] > records[1]["similarity"]


@pytest.mark.slow
def test_the_python_evaluate_scores_an_embedding_task_as_the_command_does(minilm_dir, tmp_path,
                                                                         capsys):
    """`sj.evaluate` of an embedding task gives the metric `samp-jax eval` gives (its FP32 row),
    each by the model's own similarity: a dot-product model's differs from a cosine one's."""
    from samp_jax.app import cli
    from samp_jax.tasks import load_task
    words = "guitar music dog beach onion market plane night river stone paper cold".split()
    rng = np.random.default_rng(0)
    data = tmp_path / "sts.jsonl"
    data.write_text("".join(json.dumps({"text": f"a {words[i]} and a {words[j]}",
                                        "text_pair": f"the {words[j]} near the {words[k]}",
                                        "score": float(rng.uniform(0, 5))}) + "\n"
                            for i, j, k in rng.integers(0, len(words), (60, 3))))
    values = []
    for folder in (minilm_dir, _dot_folder(minilm_dir, tmp_path)):
        result = sj.evaluate(sj.load(folder), load_task(data), batch_size=16)
        code = cli.main(["eval", "--model", str(folder), "--data", str(data), "--precision",
                         "fp32", "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0 and result["metric"] == out["metric"] == "spearman"
        assert result["examples"] == out["examples"] >= 10
        assert result["value"] == pytest.approx(out["rows"][0]["value"], abs=1e-6)
        values.append(result["value"])
    assert abs(values[0] - values[1]) > 1e-3  # cosine and dot rank the pairs otherwise


def test_the_evaluations_proxy_reads_the_length_where_the_similarity_does(minilm_dir):
    """1 - cosine misses a change of an embedding's length, which moves its dot products and
    distances: the proxy of an embedder compared by one of those is the relative squared change
    of each embedding; cosine keeps 1 - cosine."""
    reference = A[:2]
    assert np.all(COSINE.rows(1.1 * reference, reference) < 1e-7)
    np.testing.assert_allclose(EMBEDDING_CHANGE.rows(1.1 * reference, reference), 0.01, rtol=1e-5)
    np.testing.assert_array_equal(EMBEDDING_CHANGE.rows(reference, reference), 0.0)
    turned = np.array([[2.0, 1.0, 2.0], [0.0, 4.0, 3.0]])  # same lengths, other directions
    np.testing.assert_allclose(EMBEDDING_CHANGE.rows(turned, reference), [2 / 9, 2 / 25], rtol=1e-12)
    examples = [{"text": "a", "text_pair": "b", "score": 1.0}, {"text": "c", "text_pair": "d", "score": 2.0}]
    tokenizer = sj.Tokenizer.from_pretrained(minilm_dir)
    for name in SIMILARITIES:
        evaluation = EmbeddingEvaluation(tokenizer, examples, metric=get_metric("spearman"),
                                         similarity=name)
        assert evaluation.proxy_kind is (COSINE if name == "cosine" else EMBEDDING_CHANGE), name
