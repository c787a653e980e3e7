"""Ranking quality per query (`text_pair_ranking` for a cross-encoder, `embedding_ranking` for a
bi-encoder): the metrics against trec_eval and scikit-learn (`tests/golden/ranking_metrics.json`,
from `tools/golden_ranking.py`) and against every order of tied scores, the split by query,
the margin over queries, data that cannot be ranked, and the command line end to end."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import re
import math
import warnings

import numpy as np
import pytest
from flax import nnx

import samp_jax as sj
from calibrate import SearchConfig, search
from calibrate.search.objectives import task_objective
from samp_jax.app.cli import main
from samp_jax.models import Readout, make_head, save_pretrained
from samp_jax.serving.forward import jit_forward
from samp_jax.tasks import ranking
from samp_jax.tasks.files import load_task
from samp_jax.tasks.metrics import (MAP, METRICS, MRR_AT_10, NDCG_AT_10, guarded_difference,
                                    unchanged_margin)
from samp_jax.tasks.task import RelevantClassOverride, check_head_fits, evaluate
from tests.helpers import GOLDEN, small_split_warnings

CROSS_ENCODER = GOLDEN / "cross_encoder" / "one"  # a tiny BERT reranker, one output
BI_ENCODER = GOLDEN / "st_dense" / "sentence"     # a tiny sentence-transformers embedder
WORDS = "the man is playing guitar in on an are of two one".split()
MEASURES = {"mrr@10": "recip_rank@10", "ndcg@10": "ndcg_cut_10", "map": "map",
            "recall@1": "recall_1", "recall@5": "recall_5", "recall@10": "recall_10",
            "recall@100": "recall_100"}


def _gold(queries: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    return np.column_stack([queries, relevance]).astype(np.float64)


@functools.cache
def _golden() -> list[dict]:
    return json.loads((GOLDEN / "ranking_metrics.json").read_text())["queries"]


def _interleaved(cases: list[dict], seed: int = 0):
    """Every case's rows in one split, shuffled (a query's rows are not together), with each
    row's query: scores, relevance, query index."""
    scores = np.concatenate([c["scores"] for c in cases])
    relevance = np.concatenate([c["relevance"] for c in cases])
    queries = np.concatenate([[i] * len(c["scores"]) for i, c in enumerate(cases)])
    order = np.random.default_rng(seed).permutation(len(scores))
    return scores[order], relevance[order], queries[order]


# ------------------------------------------------------------------------ the metrics
def test_every_ranking_metric_is_trec_eval_averaged_over_the_orders_of_tied_scores():
    cases = _golden()
    # the data holds what the conventions decide: ties, queries without a relevant row, graded
    assert sum(len(set(c["scores"])) < len(c["scores"]) for c in cases) > 100
    assert sum(not any(c["relevance"]) for c in cases) > 10
    assert sum(max(c["relevance"]) > 1 for c in cases) > 20
    single = [len(c["scores"]) == 1 for c in cases]  # one row: relevant, graded, not relevant
    assert sorted(max(c["relevance"]) for c, one in zip(cases, single) if one) == [0, 1, 3]
    scores, relevance, queries = _interleaved(cases)
    for name, measure in MEASURES.items():
        per_query = METRICS[name].evidence(scores, _gold(queries, relevance))
        reference = np.array([c[measure] for c in cases])
        assert np.abs(per_query - reference).max() < 1e-12, name
        assert METRICS[name].value(per_query) == pytest.approx(reference.mean(), abs=1e-12)
    # scikit-learn's own tie averaging; it refuses a query of one row (null there)
    sklearn = np.array([np.nan if one else c["sklearn_ndcg_10"] for c, one in zip(cases, single)])
    ndcg = NDCG_AT_10.evidence(scores, _gold(queries, relevance))
    assert np.abs(ndcg - sklearn)[~np.array(single)].max() < 1e-12


def _every_order(scores, relevance, k):
    """MRR@k, NDCG@k, AP and recall@k of one query by their definitions, averaged over every
    order of its tied rows."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    blocks = [list(b) for _, b in itertools.groupby(order, key=lambda i: scores[i])]
    values = []
    for choice in itertools.product(*(itertools.permutations(b) for b in blocks)):
        rel = np.array([relevance[i] for b in choice for i in b], float)
        hit = rel >= 1
        discount = np.array([1 / math.log2(i + 2) if i < k else 0.0 for i in range(len(rel))])
        ideal = float(np.sort(rel)[::-1] @ discount)
        found = hit.sum()
        values.append((
            next((1 / (i + 1) for i in range(min(k, len(rel))) if hit[i]), 0.0),
            float(rel @ discount) / ideal if ideal else 0.0,
            sum(hit[:i + 1].sum() / (i + 1) for i in range(len(rel)) if hit[i]) / found if found else 0.0,
            hit[:k].sum() / found if found else 0.0))
    return np.mean(values, axis=0)


@pytest.mark.parametrize("seed", range(3))
def test_every_cutoff_matches_the_definitions_over_every_tie_order(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 8, 30)
    scores = np.concatenate([rng.integers(0, 3, n) for n in sizes]).astype(float)  # many ties
    relevance = np.concatenate([rng.integers(0, 3, n) * (rng.random(n) < 0.4) for n in sizes])
    queries = np.repeat(np.arange(len(sizes)), sizes)
    starts = np.r_[0, np.cumsum(sizes)]
    for k in (1, 3, 5):
        got = np.stack([ranking.reciprocal_rank(scores, relevance, queries, k),
                        ranking.ndcg(scores, relevance, queries, k),
                        ranking.average_precision(scores, relevance, queries),
                        ranking.recall(scores, relevance, queries, k)], axis=1)
        expected = np.stack([_every_order(scores[a:b], relevance[a:b], k)
                             for a, b in zip(starts[:-1], starts[1:])])
        assert np.abs(got - expected).max() < 1e-12


def test_tied_scores_rank_as_a_random_order_does_whatever_the_file_order():
    """A model whose scores all tie is no better when the relevant passage comes first in the
    file (trec_eval breaks ties by document name: a constant model could score MRR 1)."""
    relevance = np.array([1, 0, 0, 0])
    expected = np.mean([1, 1 / 2, 1 / 3, 1 / 4])
    for order in ([0, 1, 2, 3], [3, 2, 1, 0]):
        gold = _gold(np.zeros(4), relevance[order])
        assert MRR_AT_10.value(MRR_AT_10.evidence(np.ones(4), gold)) == pytest.approx(expected)
        assert MAP.value(MAP.evidence(np.ones(4), gold)) == pytest.approx(expected)


def test_a_query_without_a_relevant_row_scores_zero_and_counts_in_the_mean():
    gold = _gold(np.array([0, 0, 1, 1]), np.array([1, 0, 0, 0]))
    for metric in (MRR_AT_10, NDCG_AT_10, MAP, METRICS["recall@1"]):
        evidence = metric.evidence(np.array([0.9, 0.1, 0.9, 0.1]), gold)
        assert evidence.tolist() == [1.0, 0.0] and metric.value(evidence) == 0.5
    with pytest.raises(ValueError, match=r"needs a relevant row .* the 2 queries scored \(4 "
                                         r"rows\) have none"):
        MRR_AT_10.check_gold(_gold(np.array([0, 0, 1, 1]), np.zeros(4)))
    nan = MRR_AT_10.evidence(np.array([np.nan, 0.1, 0.9, 0.1]), gold)  # no ranking read from NaN
    assert nan.shape == (2,) and np.isnan(nan).all()


def test_a_split_without_a_relevant_row_and_a_ranking_metric_elsewhere_are_refused(minilm_dir):
    tokenizer = sj.Tokenizer.from_pretrained(minilm_dir)
    rows = _rows(4)
    task = load_task([r | {"relevance": 0} for r in rows], task_type="text_pair_ranking",
                     sizes={"test": 2, "search": 1, "calibration": 1, "dev": 0})
    with pytest.raises(ValueError, match=r"the test split of data: a ranking metric needs a "
                                         r"relevant row .* the 2 queries scored \(8 rows\)"):
        task.evaluation(tokenizer, "test")
    scoring = load_task([{k: v for k, v in r.items() if k != "qid"} for r in _rows()],
                        head="sequence_classification", readout=Readout.SCORE,
                        columns={"score": "relevance"}, task_type="text_pair_scoring")
    with pytest.raises(ValueError, match=r"metric 'ndcg@10' is not one it can be scored by; these "
                                         r"rows are scored by .*\(ndcg@10 ranks each query's rows: "
                                         r"task type text_pair_ranking or embedding_ranking"):
        dataclasses.replace(scoring, metric_name="ndcg@10")


# ------------------------------------------------------------------------ the margin
def test_the_margin_treats_the_query_as_the_unit():
    """The guarded drop of a ranking metric is the adjusted paired bound over per-query values:
    40 queries of 25 rows each are 40 units, not 1,000."""
    rng = np.random.default_rng(0)
    queries = np.repeat(np.arange(40), 25)
    relevance = (rng.random(1000) < 0.1).astype(int)
    base = rng.normal(size=1000)
    candidate = base + rng.normal(0, 0.5, 1000)
    gold = _gold(queries, relevance)
    before, after = MRR_AT_10.evidence(base, gold), MRR_AT_10.evidence(candidate, gold)
    assert before.shape == after.shape == (40,)
    drop = MRR_AT_10.guarded_drop(before, after)
    assert drop == pytest.approx(guarded_difference(before, after), abs=0)
    diff = np.r_[before - after, 1.0, -1.0]  # by hand: mean + z * SE over 40 + 2 queries
    assert drop == pytest.approx((before - after).mean() + 1.645 * diff.std() / np.sqrt(42))
    assert unchanged_margin(MRR_AT_10, 40) == pytest.approx(1.645 * np.sqrt(2 / 42) / np.sqrt(42))


def test_a_query_of_one_row_is_a_unit_of_the_margin_that_no_ranker_moves():
    """Every ranker scores a one-row query alike (1 when the row is relevant, else 0): its
    paired difference is 0, and it counts among the queries the bound is over."""
    rng = np.random.default_rng(1)
    queries = np.r_[np.repeat(np.arange(30), 5), np.arange(30, 40)]  # 10 queries of one row
    relevance = np.r_[(rng.random(150) < 0.3).astype(int), np.arange(10) % 2]
    base, candidate = rng.normal(size=160), rng.normal(size=160)
    gold = _gold(queries, relevance)
    for metric in (MRR_AT_10, NDCG_AT_10, MAP, METRICS["recall@1"]):
        before, after = metric.evidence(base, gold), metric.evidence(candidate, gold)
        assert before.shape == (40,)
        assert before[30:].tolist() == after[30:].tolist() == [0.0, 1.0] * 5
        diff = np.r_[before - after, 1.0, -1.0]  # by hand: mean + z * SE over 40 + 2 queries
        assert metric.guarded_drop(before, after) == pytest.approx(
            (before - after).mean() + 1.645 * diff.std() / np.sqrt(42))


@pytest.mark.parametrize("queries, said", [
    (8, "the search split has 8 queries: even a map that changes none of them is bounded at a "
        "drop of 0.233 in mrr@10"),  # 1.645 sqrt(2) / (8 + 2), not / (80 + 2)
    (2000, None)])
def test_a_search_split_of_few_queries_is_said_in_queries(queries, said):
    messages = small_split_warnings("mrr@10", 10 * queries, 0.9, np.full(queries, 0.9))
    assert len(messages) == (said is not None)
    if said:
        assert said in messages[0] and "give more queries" in messages[0]


# ------------------------------------------------------------------------ data and splits
def _rows(queries=50, per_query=4, seed=0, qid=True):
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(queries):
        query = f"{' '.join(rng.choice(WORDS, 3))} q{q}"
        for p in range(per_query):
            row = {"query": query, "passage": " ".join(rng.choice(WORDS, 5)),
                   "relevance": int(rng.integers(0, 3)) if p else 1}
            rows.append({"qid": f"Q{q}", **row} if qid else row)
    return rows


@pytest.mark.parametrize("qid", [True, False])
def test_a_ranking_is_split_by_query_with_the_seed(qid):
    task = load_task(_rows(qid=qid), head="sequence_classification", readout=Readout.SCORE)
    assert task.task_type.name == "text_pair_ranking" and task.metric == "mrr@10"
    where = {}
    for split in ("train", "dev", "calibration", "search", "test"):
        for e in task.split(split):
            assert where.setdefault(e["group"], split) == split  # no query in two splits
    assert len(where) == 50 and sum(task.sizes().values()) == 200
    test = {e["group"] for e in task.split("test")}
    assert len(test) == 10  # 20% of the queries, with all their rows
    assert sum(len(task.split(s)) for s in task.sizes()) == 200
    again = load_task(_rows(qid=qid), head="sequence_classification", readout=Readout.SCORE)
    other = load_task(_rows(qid=qid), head="sequence_classification", readout=Readout.SCORE, seed=1)
    assert again.splits == task.splits and {e["group"] for e in other.split("test")} != test
    subset = task.examples("search", max_examples=9, seed=0)  # whole queries of 4 rows
    assert len(subset) == 8 and len({e["group"] for e in subset}) == 2


def test_which_columns_make_a_ranking():
    """A relevance column, or a query id beside whole-number gold, makes a ranking; a query id
    beside class names, or pairs with 0/1 labels alone, keep their task types."""
    rows = _rows()
    def task_type(rows, **options):
        return load_task(rows, **options).task_type.name
    assert task_type([{k: v for k, v in r.items() if k != "qid"} for r in rows]) == "text_pair_ranking"
    labelled = [{"qid": r["qid"], "question": r["query"], "passage": r["passage"],
                 "label": int(r["relevance"] > 0)} for r in rows]
    score = dict(head="sequence_classification", readout=Readout.SCORE)
    with pytest.warns(UserWarning, match="read as text_pair_ranking, its rows grouped into "
                                         "queries by column 'qid' and its gold read as relevance"):
        assert task_type(labelled, **score) == "text_pair_ranking"
    # an id column of one row per id is a row id: pairs stay pairs (an STS file with a qid)
    unique = [r | {"qid": f"row-{i}"} for i, r in enumerate(labelled)]
    assert task_type(unique, **score) == "text_pair_scoring"
    assert task_type(unique, head="sentence_embedding") == "embedding_pairs"
    assert task_type([{k: v for k, v in r.items() if k != "qid"} for r in labelled],
                     **score) == "text_pair_scoring"
    named = [{"id": r["qid"], **{k: v for k, v in r.items() if k != "qid"}} for r in labelled]
    assert task_type(named, columns={"group": "id"}, **score) == "text_pair_ranking"
    nli = [{"qid": r["qid"], "premise": r["query"], "hypothesis": r["passage"],
            "label": ("entailment", "neutral")[i % 2]} for i, r in enumerate(rows)]
    assert task_type(nli) == "text_pair_classification"
    with pytest.raises(ValueError, match=r"task type text_pair_ranking \(read from the columns\) "
                                         r"scores rows by a head of one output \(or P\(class 1\)"):
        load_task(rows, head="sequence_classification", readout=Readout.LABELS)


def test_a_query_repeated_under_another_id_leaves_the_other_splits_whole():
    rows = _rows()
    rows += [r | {"qid": "copy-" + r["qid"]} for r in rows[:200]]  # every query twice
    task = load_task(rows, task_type="text_pair_ranking", sizes={"test": 10})
    test = {e["text"] for e in task.split("test")}
    for split in ("train", "dev", "calibration", "search"):
        assert not test & {e["text"] for e in task.split(split)}
    assert "(their query is a test query)" in task.source


def test_a_bi_encoder_and_a_two_class_head_rank_the_same_rows(minilm_dir):
    config = sj.EncoderConfig(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4,
                              intermediate_size=64, max_position_embeddings=64)
    tokenizer = sj.Tokenizer.from_pretrained(minilm_dir)
    rows = _rows(30)
    embedder = load_task(rows, head="sentence_embedding")
    assert embedder.task_type.name == "embedding_ranking"
    assert embedder.splits == load_task(rows, head="sequence_classification").splits
    heads = {}
    for width in (1, 2, 3):
        rngs = nnx.Rngs(3)
        heads[width] = sj.EncoderModel(config, make_head("sequence_classification", config,
                                                         num_labels=width, rngs=rngs), rngs=rngs)
    task = load_task(rows, head="sequence_classification", readout=Readout.CLASSES,
                     labels=("irrelevant", "relevant"))
    assert task.task_type.name == "text_pair_ranking"
    check_head_fits(heads[1], task)
    check_head_fits(heads[2], task)
    with pytest.raises(ValueError, match=r"one output \(or P\(class 1\) of a head of two classes\); the "
                                         r"model's head has 3 outputs .*use task type "
                                         r"text_classification or text_pair_classification"):
        check_head_fits(heads[3], task)
    # a two-class head ranks by P(class 1): its metric is that of the softmax's second column
    encoded = task.encode(tokenizer, task.split("test"))
    logits = np.asarray(jit_forward(heads[2])({k: getattr(encoded, k) for k in
                                               ("input_ids", "attention_mask", "token_type_ids")}))
    probability = np.exp(logits[:, 1]) / np.exp(logits).sum(-1)
    expected = MRR_AT_10.value(MRR_AT_10.evidence(probability, encoded.gold))
    score = evaluate(heads[2], task, tokenizer=tokenizer)
    assert score == {"metric": "mrr@10", "value": pytest.approx(expected, abs=1e-12),
                     "examples": 24, "queries": 6}
    bi = sj.load(BI_ENCODER)
    scored = evaluate(bi, load_task(rows, head="sentence_embedding"))
    assert scored["metric"] == "mrr@10" and scored["queries"] == 6 and 0 < scored["value"] <= 1


QNLI_NAMES = ("entailment", "not_entailment")  # glue/qnli's order: class 0 is the relevant one


def _named_two_class_head(names=QNLI_NAMES):
    config = sj.EncoderConfig(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4,
                              intermediate_size=64, max_position_embeddings=64)
    rngs = nnx.Rngs(3)
    model = sj.EncoderModel(config, make_head("sequence_classification", config, num_labels=2,
                                              rngs=rngs), rngs=rngs)
    model.head.labels = names
    return model


def test_a_two_class_head_whose_class_0_is_relevant_is_said_and_read_as_told(minilm_dir):
    tokenizer = sj.Tokenizer.from_pretrained(minilm_dir)
    model = _named_two_class_head()
    task = load_task(_rows(30), head="sequence_classification", readout=Readout.CLASSES)
    assert task.task_type.name == "text_pair_ranking" and task.relevant_class is None
    encoded = task.encode(tokenizer, task.split("test"))
    logits = np.asarray(jit_forward(model)({k: getattr(encoded, k) for k in
                                            ("input_ids", "attention_mask", "token_type_ids")}))
    by_class = [MRR_AT_10.value(MRR_AT_10.evidence(logits[:, c] - logits[:, 1 - c], encoded.gold))
                for c in (0, 1)]
    assert by_class[0] != pytest.approx(by_class[1])  # the two readings tell apart
    with pytest.warns(UserWarning, match=r"names its two classes \['entailment', "
                      r"'not_entailment'\]: the ranking scores each row by "
                      r"P\('not_entailment'\), class 1.*--relevant-class entailment"):
        assert evaluate(model, task, tokenizer=tokenizer)["value"] == pytest.approx(by_class[1])
    told = dataclasses.replace(task, relevant_class=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # told: nothing to say
        assert evaluate(model, told, tokenizer=tokenizer)["value"] == pytest.approx(by_class[0])
        assert evaluate(_named_two_class_head(("LABEL_0", "LABEL_1")), task,
                        tokenizer=tokenizer)["value"] == pytest.approx(by_class[1])
    # fine-tuning trains the class it reads: class 0's cross-entropy where told
    relevance = np.asarray(encoded.labels)
    picked = np.where(relevance >= 1, 0, 1)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    loss = told.training_loss_for(model)
    assert loss.name == "softmax cross-entropy (class 0: relevance >= 1)"
    assert float(loss.fn(logits, relevance)) == pytest.approx(
        -np.mean(log_p[np.arange(len(picked)), picked]), rel=1e-5)
    assert task.training_loss_for(model).name == "softmax cross-entropy (class 1: relevance >= 1)"
    with pytest.raises(ValueError, match=r"relevant_class=0 names the relevant one of a head of "
                                         r"two classes; the model's head has 1 output"):
        check_head_fits(sj.load(CROSS_ENCODER), told)
    with pytest.raises(ValueError, match=r"relevant_class=0 names the relevant class.*ranking"):
        dataclasses.replace(load_task([{"text": f"a b {i}", "label": "xy"[i % 2]}
                                       for i in range(10)]), relevant_class=0)


def test_the_commands_say_and_read_the_relevant_class_of_a_named_two_class_head(
        tmp_path, capsys, minilm_dir):
    folder = save_pretrained(_named_two_class_head(), tmp_path / "qnli", tokenizer_dir=minilm_dir,
                             labels=QNLI_NAMES)
    data = tmp_path / "ranking.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(30)))
    model = sj.load(folder)
    task = load_task(data, head=model.head_kind, readout=model.readout, seed=0)
    expected = {c: evaluate(model, dataclasses.replace(task, relevant_class=c))["value"]
                for c in (0, 1)}
    capsys.readouterr()
    scored = {}
    for given in (None, "entailment", "0", "not_entailment"):
        option = [] if given is None else ["--relevant-class", given]
        assert main(["eval", "--model", str(folder), "--data", str(data), "--precision", "fp16",
                     "--json", *option]) == 0
        out, err = capsys.readouterr()
        scored[given] = json.loads(out)["rows"][0]["value"]
        said = "ranking scores each row by P('not_entailment'), class 1" in err
        assert said == (given is None), err
    assert scored == {None: pytest.approx(expected[1]), "entailment": pytest.approx(expected[0]),
                      "0": pytest.approx(expected[0]), "not_entailment": pytest.approx(expected[1])}
    assert main(["eval", "--model", str(folder), "--data", str(data),
                 "--relevant-class", "relevant"]) == 2
    assert ("--relevant-class 'relevant' is none of the model's two classes ['entailment', "
            "'not_entailment'], nor the id 0 or 1") in capsys.readouterr().err
    assert main(["eval", "--model", str(CROSS_ENCODER), "--data", str(data),
                 "--relevant-class", "0"]) == 2
    assert "names the relevant one of a head of two classes" in capsys.readouterr().err
    assert main(["finetune", "--model", str(folder), "--data", str(data), "--min-steps", "2",
                 "--epochs", "1", "--relevant-class", "entailment", "--out",
                 str(tmp_path / "ft")]) == 0
    assert "names its two classes" not in capsys.readouterr().err
    summary = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert summary["relevant_class"] == 0 and summary["loss"].startswith(
        "softmax cross-entropy (class 0")
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["id2label"] == {"0": "entailment", "1": "not_entailment"}  # its names, as they were
    # the folder carries the class it was trained to read, which the commands then read
    assert saved["samp_jax_relevant_class"] == 0
    tuned = sj.load(tmp_path / "ft")
    assert tuned.relevant_class == 0
    with pytest.warns(RelevantClassOverride, match=r"reads class 1 as the relevant one; the "
                      r"model says class 0 is"):
        reads = {c: evaluate(tuned, dataclasses.replace(task, relevant_class=c))["value"]
                 for c in (0, 1)}
    assert reads[0] != pytest.approx(reads[1])
    with warnings.catch_warnings():  # the Python API reads the saved class too, and says nothing
        warnings.simplefilter("error")
        assert evaluate(tuned, task)["value"] == pytest.approx(reads[0])
        assert task_objective(tuned, task, tuned.tokenizer).evaluation.relevant_class == 0
    override = (f"samp-jax eval: warning: --relevant-class not_entailment reads class 1 "
                f"('not_entailment') as the relevant one; {tmp_path / 'ft'} says class 0 "
                "('entailment') is (its saved relevant class, which the commands read without "
                "the option)")
    for given, read in ((None, 0), ("entailment", 0), ("not_entailment", 1)):
        option = [] if given is None else ["--relevant-class", given]
        assert main(["eval", "--model", str(tmp_path / "ft"), "--data", str(data), "--precision",
                     "fp16", "--json", *option]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out)["rows"][0]["value"] == pytest.approx(reads[read])
        assert "names its two classes" not in err
        assert err.count(override) == (read == 1), err  # an explicit other class: said once


def test_a_saved_relevant_class_is_kept_quantized_and_a_damaged_one_refused(tmp_path, capsys,
                                                                            minilm_dir):
    """A head's relevant class travels in config.json (`samp_jax_relevant_class`) and in a
    quantized folder's head; a value that is not 0 or 1 is refused naming the file and key."""
    model = _named_two_class_head()
    model.head.relevant_class = 0
    folder = save_pretrained(model, tmp_path / "f", tokenizer_dir=minilm_dir, labels=QNLI_NAMES)
    quantized = sj.quantize(sj.load(folder), sj.PrecisionMap.preset("quant_ffn_only", 2))
    quantized.save(tmp_path / "q")
    assert sj.QuantizedModel.load(tmp_path / "q").relevant_class == 0
    assert sj.load(tmp_path / "q").relevant_class == 0
    with pytest.raises(ValueError, match=r"head\.spec\.relevant_class is 2, saved as 0"):
        sidecar = json.loads((tmp_path / "q" / "quantization.json").read_text())
        sidecar["head"]["spec"]["relevant_class"] = 2
        (tmp_path / "q" / "quantization.json").write_text(json.dumps(sidecar))
        sj.QuantizedModel.load(tmp_path / "q")
    config = json.loads((folder / "config.json").read_text())
    for bad in (2, -1, "0", 0.0, True):
        (folder / "config.json").write_text(json.dumps(config | {"samp_jax_relevant_class": bad}))
        with pytest.raises(sj.SampJaxError, match=re.escape(
                f"{folder / 'config.json'}: samp_jax_relevant_class: relevant class {bad!r} is "
                "not the integer 0 or 1")):
            sj.load(folder)
    data = tmp_path / "ranking.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(30)))
    assert main(["eval", "--model", str(folder), "--data", str(data)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json: samp_jax_relevant_class: relevant class True" in err[0]
    with pytest.raises(ValueError, match=r"relevant_class=0 names a class of a head of two "
                                         r"classes, not of num_labels=3"):
        make_head("sequence_classification", model.config, num_labels=3, relevant_class=0,
                  rngs=nnx.Rngs(0))


def test_the_search_objective_bounds_the_drop_over_queries(minilm_dir):
    model = sj.load(CROSS_ENCODER)
    task = load_task(_rows(40), head=model.head_kind, readout=model.readout)
    objective = task_objective(model, task, model.tokenizer)
    evidence = objective.evaluation.evidence(objective.reference)
    assert evidence.shape == (8,)  # the search split's 8 queries
    noisy = [o + np.float32(0.3) * np.random.default_rng(0).normal(size=o.shape).astype(np.float32)
             for o in objective.reference]
    assert objective.guarded_drop(noisy, objective.reference) == pytest.approx(
        guarded_difference(evidence, objective.evaluation.evidence(noisy)))


@pytest.mark.parametrize("change, said", [
    (lambda rows: [r | {"relevance": 0.5} if i == 6 else r for i, r in enumerate(rows)],
     r"ranking\.jsonl: row 7: column 'relevance' holds 0\.5; expected a relevance: a whole "
     r"number of 0 or more"),
    (lambda rows: [r | {"relevance": "high"} if i == 2 else r for i, r in enumerate(rows)],
     r"row 3: column 'relevance' holds 'high'; expected a relevance"),
    (lambda rows: [r | {"relevance": -1} if i == 3 else r for i, r in enumerate(rows)],
     r"row 4: column 'relevance' holds -1; expected a relevance: a whole number of 0 or more"),
    (lambda rows: [r | {"qid": f"row-{i}"} for i, r in enumerate(rows)],
     r"ranking\.jsonl: every one of its 200 queries has 1 row \(passage\), so no ranking can be "
     r"read .*grouped by the query id column 'qid'; to score each pair alone, give "
     r"--task-type text_pair_classification"),
    (lambda rows: [{k: v for k, v in r.items() if k != "relevance"} for r in rows],
     r"ranking\.jsonl: a text_pair_ranking task needs a relevance column, and none of "
     r"\('relevance', .*\) is one; columns found: \['qid', 'query', 'passage'\]; name yours "
     r"with --relevance-column")])
def test_data_that_cannot_be_ranked_is_refused_in_one_line(tmp_path, change, said):
    path = tmp_path / "ranking.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in change(_rows())))
    with pytest.raises(ValueError, match=said) as raised:
        load_task(path, task_type="text_pair_ranking")
    assert "\n" not in str(raised.value)


DILUTED = ("they count in the mean over queries, so a drop on the other queries shows "
           "diluted in it (and a tolerance relative to it is wider for them); a split whose "
           "queries all have one row is refused")


def _with_lonely_queries(rows, count=3):
    """`rows` and `count` queries of one row each (a BEIR query with one judged passage left),
    the first relevant, the others not."""
    return rows + [rows[4 * i] | {"qid": f"lonely-{i}", "query": f"lonely {i}",
                                  "relevance": int(i == 0)} for i in range(count)]


def test_queries_of_one_row_are_scored_as_trec_eval_scores_them_and_counted_in_a_warning():
    rows = _with_lonely_queries(_rows())
    with pytest.warns(UserWarning) as caught:
        task = load_task(rows, task_type="text_pair_ranking")
    said = [str(w.message) for w in caught]
    assert said == ["list of dicts: 3 of 53 queries have a single row (passage; the first: row "
                    "201, query 'lonely-0'); every ranker scores the same on such a query (1 "
                    "when its row is relevant, else 0, as trec_eval scores it), so they cannot "
                    "tell rankers apart; " + DILUTED]
    # whole queries: each one-row query is a query of its split, counted as one
    where = {e["group"]: split for split in task.sizes() for e in task.split(split)}
    assert {q for q in where if q.startswith("lonely")} == {"lonely-0", "lonely-1", "lonely-2"}
    assert sum(task.query_sizes().values()) == 53 and sum(task.sizes().values()) == 203
    queries = [0, 0, 1, 2, 3, 3]  # queries 1 (relevant) and 2 (not) have one row
    gold = _gold(np.array(queries), np.array([0, 1, 1, 0, 2, 0]))
    for metric in (MRR_AT_10, NDCG_AT_10, MAP, METRICS["recall@1"]):
        evidence = metric.evidence(np.array([0.9, 0.1, 0.3, 0.7, 0.2, 0.8]), gold)
        assert evidence[1:3].tolist() == [1.0, 0.0]  # trec_eval's values of one row
        assert metric.value(evidence) == pytest.approx(np.mean(evidence))


def test_a_split_whose_queries_all_have_one_row_is_refused_where_it_is_scored(tmp_path, capsys):
    """A dev (or test, search) split of one-row queries scores the same for every model: no
    checkpoint or map can be told apart on it, so it is refused where it is scored; training
    on such rows is fine."""
    rows = _rows()
    lonely = tmp_path / "dev.jsonl"
    lonely.write_text("".join(json.dumps(r | {"qid": f"d{i}"}) + "\n"
                              for i, r in enumerate(rows[:12])))
    with pytest.raises(ValueError, match=r"^a ranking metric needs a query of 2 rows or more; "
                       r"each of the 12 queries scored has 1 row"):
        METRICS["mrr@10"].check_gold(_gold(np.arange(12), np.array([1, 0] * 6)))
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", "--model", str(CROSS_ENCODER), "--split-file", f"train={train}",
                 "--split-file", f"test={lonely}", "--precision", "fp16"]) == 1
    assert "each of the 12 queries scored has 1 row" in capsys.readouterr().err


def test_the_command_line_scores_a_file_with_queries_of_one_row_and_says_so(tmp_path, capsys):
    path = tmp_path / "ranking.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _with_lonely_queries(_rows(), 1)))
    assert main(["eval", "--model", str(CROSS_ENCODER), "--data", str(path),
                 "--precision", "fp16", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["task_type"] == "text_pair_ranking"
    lines = [line for line in err.splitlines() if "a single row" in line]
    assert lines == ["samp-jax eval: warning: " + str(tmp_path / "ranking.jsonl") + ": 1 of 51 "
                     "queries have a single row (passage; the first: row 201, query "
                     "'lonely-0'); every ranker scores the same on such a query (1 when its row "
                     "is relevant, else 0, as trec_eval scores it), so they cannot tell rankers "
                     "apart; " + DILUTED], err


def test_a_ranking_counts_its_queries_per_split_and_other_tasks_do_not():
    rows = _rows()
    task = load_task(rows, task_type="text_pair_ranking")
    queries = task.query_sizes()
    assert set(queries) == set(task.sizes()) and sum(queries.values()) == len({r["qid"] for r in rows})
    for split, count in queries.items():
        assert count == len({e["group"] for e in task.split(split)}) <= task.sizes()[split]
    assert load_task([{k: v for k, v in r.items() if k != "qid"} | {"label": r["relevance"] > 0}
                      for r in rows], task_type="text_pair_classification").query_sizes() is None


def test_eval_says_how_many_queries_its_examples_are_in(tmp_path, capsys):
    path = tmp_path / "ranking.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows(40)))
    assert main(["eval", "--model", str(CROSS_ENCODER), "--data", str(path),
                 "--precision", "fp16"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert re.search(r"on the test split \(\d+ examples in \d+ queries, cut at", header), header


# ------------------------------------------------------------------------ end to end
def _write(tmp_path, rows, name="ranking.csv"):
    path = tmp_path / name
    columns = list(rows[0])
    path.write_text(",".join(columns) + "\n" + "".join(
        ",".join(str(r[c]) for c in columns) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_eval_predict_calibrate_and_search_a_reranker_from_the_command_line(tmp_path, capsys):
    rows = [{"query_id": r["qid"], "question": r["query"], "doc": r["passage"],
             "grade": r["relevance"]} for r in _rows(60)]
    data = _write(tmp_path, rows)
    names = ["--text-column", "question", "--text-pair-column", "doc", "--relevance-column",
             "grade", "--group-column", "query_id"]
    assert main(["eval", "--model", str(CROSS_ENCODER), "--data", str(data), *names,
                 "--metric", "ndcg@10", "--precision", "fp16,fully_quant", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task_type"] == "text_pair_ranking" and result["metric"] == "ndcg@10"
    fp32 = result["rows"][0]
    assert fp32["examples"] == 48 and fp32["queries"] == 12 and 0 < fp32["value"] <= 1
    # the same value from the Python API, and from predict's scores of the test rows
    model = sj.load(CROSS_ENCODER)
    task = sj.tasks.load_task(data, columns=sj.tasks.Columns(
        text="question", text_pair="doc", relevance="grade", group="query_id"),
        head=model.head_kind, readout=model.readout, seed=0)
    api = evaluate(model, dataclasses.replace(task, metric_name="ndcg@10"))
    assert api["value"] == pytest.approx(fp32["value"], abs=1e-6) and api["queries"] == 12
    test = _write(tmp_path, [{"question": e["text"], "doc": e["text_pair"]} for e in task.split("test")],
                  "test.csv")
    assert main(["predict", "--model", str(CROSS_ENCODER), "--data", str(test), *names[:4],
                 "--out", str(tmp_path / "p.jsonl")]) == 0
    capsys.readouterr()
    predicted = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(predicted) == 48 and all(isinstance(p["score"], float) for p in predicted)
    gold = task.encode(model.tokenizer, task.split("test")).gold
    by_hand = NDCG_AT_10.value(NDCG_AT_10.evidence(np.array([p["score"] for p in predicted]), gold))
    assert by_hand == pytest.approx(fp32["value"], abs=1e-5)
    assert main(["calibrate", "--model", str(CROSS_ENCODER), "--data", str(data), *names,
                 "--precision", "fully_quant", "--eval", "--out", str(tmp_path / "q"), "--json"]) == 0
    calibrated = json.loads(capsys.readouterr().out)
    assert calibrated["test"]["metric"] == "mrr@10" and calibrated["test"]["queries"] == 12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 12 search queries: too few for a verdict, said
        assert main(["search", "--model", str(CROSS_ENCODER), "--data", str(data), *names,
                     "--metric", "map", "--tolerance", "5%", "--out", str(tmp_path / "s"),
                     "--json"]) in (0, 3)
    summary = json.loads(capsys.readouterr().out)
    assert summary["metric"] == "map" and "chosen" in summary["test"]
    assert summary["split_sizes"]["search"] == 48 and summary["split_queries"]["search"] == 12


@pytest.mark.slow
def test_eval_and_search_a_bi_encoder_from_the_command_line_and_the_api(tmp_path, capsys):
    data = _write(tmp_path, _rows(60))
    assert main(["eval", "--model", str(BI_ENCODER), "--data", str(data), "--precision",
                 "fully_quant", "--metric", "recall@5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task_type"] == "embedding_ranking" and result["rows"][0]["queries"] == 12
    model = sj.load(BI_ENCODER)
    task = load_task(data, head=model.head_kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = search(model, task, SearchConfig(tolerance=0.05, target="cpu"),
                       tokenizer=model.tokenizer, progress=False)
    assert found.metric_name == "mrr@10" and found.precision_map is not None
