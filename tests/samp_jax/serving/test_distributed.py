"""Distributed runs for real: `samp-jax eval` and `samp-jax predict` started as two processes
of two CPU devices each (gloo collectives over 127.0.0.1), against the same commands in one
process; a process that dies; processes given different data. Plus the helpers' contracts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

import samp_jax as sj
from samp_jax.models import make_head, save_pretrained
from samp_jax.serving import distributed
from tests.helpers import ROOT

TINY = dict(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
            max_position_embeddings=64)
WORDS = "good great fine bad awful poor movie film plot day night city river happy dull".split()


@pytest.fixture(scope="module")
def files(tmp_path_factory, minilm_dir):
    """A tiny random BERT classifier (MiniLM's tokenizer) and a 90-row labelled CSV."""
    root = tmp_path_factory.mktemp("distributed")
    config = sj.EncoderConfig(**TINY)
    rngs = nnx.Rngs(3)
    model = sj.EncoderModel(config, make_head("sequence_classification", config, num_labels=2,
                                              rngs=rngs), rngs=rngs)
    save_pretrained(model, root / "model", tokenizer_dir=minilm_dir, labels=("neg", "pos"))
    rng = np.random.default_rng(0)
    rows = [" ".join(rng.choice(WORDS, rng.integers(3, 30))) for _ in range(90)]
    (root / "data.csv").write_text("text,label\n" + "".join(
        f"{text},{'pos' if i % 3 else 'neg'}\n" for i, text in enumerate(rows)))
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(args, *, devices: int, cwd: Path) -> subprocess.Popen:
    env = os.environ | {"JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices),
                        "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "samp_jax.app", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_processes(args, *, processes: int, devices: int, cwd: Path, timeout: int = 300):
    """Runs `samp-jax ARGS` as `processes` processes of one run; returns [(rc, out, err)]."""
    extra = lambda i: ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes),  # noqa: E731
                       "--process-id", str(i), "--heartbeat-timeout", "20"]
    port = _free_port()
    started = [_command([*args, *(extra(i) if processes > 1 else [])], devices=devices, cwd=cwd)
               for i in range(processes)]
    results = []
    for p in started:
        out, err = p.communicate(timeout=timeout)
        results.append((p.returncode, out, err))
    return results


EVAL = ["eval", "--precision", "fp16,fully_quant,fp8", "--activation", "static", "--json"]


@pytest.mark.slow
def test_eval_on_two_processes_of_two_devices_equals_one_process(files, tmp_path):
    args = [*EVAL, "--model", str(files / "model"), "--data", str(files / "data.csv")]
    (rc, single, err), = _run_processes(args, processes=1, devices=1, cwd=tmp_path)
    assert rc == 0, err
    runs = _run_processes(args, processes=2, devices=2, cwd=tmp_path)
    assert [rc for rc, _, _ in runs] == [0, 0], [err[-2000:] for _, _, err in runs]
    assert runs[1][1] == ""  # the result is reported once, by process 0
    one, two = json.loads(single), json.loads(runs[0][1])
    assert len(two["rows"]) == 4 and two["examples"] == one["examples"] > 0
    for a, b in zip(one["rows"], two["rows"]):
        assert (a["variant"], a["value"], a["agreement"]) == (b["variant"], b["value"], b["agreement"])
    assert "Traceback" not in runs[0][2] + runs[1][2]


@pytest.mark.slow
def test_predict_on_two_processes_writes_one_file_equal_to_one_process(files, tmp_path):
    def args(out):
        return ["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                "--out", str(out), "--json"]
    (rc, _, err), = _run_processes(args(tmp_path / "one.jsonl"), processes=1, devices=1, cwd=tmp_path)
    assert rc == 0, err
    runs = _run_processes(args(tmp_path / "two.jsonl"), processes=2, devices=2, cwd=tmp_path)
    assert [rc for rc, _, _ in runs] == [0, 0], [err[-2000:] for _, _, err in runs]
    assert json.loads(runs[0][1]) == {"predictions": str(tmp_path / "two.jsonl"), "rows": 90}
    assert runs[1][1] == ""
    one = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert len(two) == 90 and [r["text"] for r in two] == [r["text"] for r in one]
    for a, b in zip(one, two):  # each process ran its own rows; the same numbers come back
        assert a["label"] == b["label"]
        np.testing.assert_allclose(b["score"], a["score"], rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.jsonl", "two.jsonl"]  # no litter


@pytest.mark.slow
def test_python_evaluate_under_jax_distributed_equals_one_process(files, tmp_path):
    worker = Path(__file__).with_name("distributed_worker.py")
    env = os.environ | {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    port = str(_free_port())

    def start(i, processes, devices):
        return subprocess.Popen([sys.executable, str(worker), str(files / "model"),
                                 str(files / "data.csv"), str(i), str(processes), port],
                                env=env | {"JAX_NUM_CPU_DEVICES": str(devices)}, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = [p.communicate(timeout=300) + (p.returncode,)
            for p in [start(0, 1, 1), start(0, 2, 2), start(1, 2, 2)]]
    assert [rc for _, _, rc in runs] == [0, 0, 0], [err[-2000:] for _, err, _ in runs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _, _ in runs]
    assert [r["devices"] for r in results] == [1, 4, 4]
    assert [r["process"] for r in results] == [0, 0, 1]
    assert results[0]["metric"] == results[1]["metric"] == results[2]["metric"]
    assert results[0]["metric"]["examples"] > 0


def test_processes_given_different_data_refuse_to_mix_it(files, tmp_path):
    other = tmp_path / "other.csv"
    lines = (files / "data.csv").read_text().splitlines(keepends=True)
    other.write_text("".join(lines[:-1]) + "a different last row,neg\n")
    port = _free_port()
    started = [_command(["predict", "--model", str(files / "model"), "--data", str(data),
                         "--out", str(tmp_path / "p.jsonl"), "--coordinator", f"127.0.0.1:{port}",
                         "--num-processes", "2", "--process-id", str(i)], devices=1, cwd=tmp_path)
               for i, data in enumerate((files / "data.csv", other))]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in started]
    for out, err, rc in results:
        assert rc == 1, err
        assert "differs between processes" in err and "Traceback" not in err
    assert not (tmp_path / "p.jsonl").exists()


def test_a_process_that_dies_stops_the_others_within_bounded_time(files, tmp_path):
    args = [*EVAL[:-1], "--precision", "fp16,fully_quant,fp8,bf16,fp16,fully_quant",
            "--model", str(files / "model"), "--data", str(files / "data.csv")]
    port = _free_port()
    extra = lambda i: ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",  # noqa: E731
                       "--process-id", str(i), "--heartbeat-timeout", "10"]
    first, second = (_command([*args, *extra(i)], devices=2, cwd=tmp_path) for i in range(2))
    seen = []
    for line in first.stderr:  # process 0 reports progress; kill process 1 mid-run
        seen.append(line)
        if "done:" in line:
            break
    assert any("done:" in line for line in seen), "".join(seen)
    second.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    _, rest = first.communicate(timeout=120)
    elapsed = time.monotonic() - killed_at
    err = "".join(seen) + rest
    assert first.returncode != 0, err
    assert elapsed < 60, f"process 0 took {elapsed:.0f} s to stop"
    assert "Traceback" not in err
    # either the collective in flight failed (our one line) or the coordinator stopped it
    assert ("another process of this distributed run stopped or failed" in err
            or "another task died" in err), err[-3000:]
    second.communicate()


# ---------------------------------------------------------------- the helpers, one process
def test_process_rows_cover_every_row_once(monkeypatch):
    for count in (0, 1, 5, 90, 91):
        for processes in (1, 2, 3, 8):
            blocks = []
            for index in range(processes):
                monkeypatch.setattr(jax, "process_count", lambda: processes)
                monkeypatch.setattr(jax, "process_index", lambda: index)
                blocks.append(distributed.process_rows(count))
            assert [i for b in blocks for i in range(count)[b]] == list(range(count))
            sizes = [len(range(count)[b]) for b in blocks]
            assert max(sizes) - min(sizes) <= 1


def test_single_process_collectives_are_identities():
    assert not distributed.is_distributed() and distributed.is_primary()
    assert distributed.gather_bytes(b"abc") == [b"abc"]
    distributed.check_same(b"anything", "nothing")  # one process: nothing to compare


def test_digest_tells_dtype_shape_and_order_apart():
    a = np.arange(4, dtype=np.int32)
    digests = {distributed.digest([a]), distributed.digest([a.astype(np.int64)]),
               distributed.digest([a.reshape(2, 2)]), distributed.digest([a, "x"]),
               distributed.digest(["x", a]), distributed.digest([b"ab", b"c"]),
               distributed.digest([b"a", b"bc"])}
    assert len(digests) == 7
    assert distributed.digest([a]) == distributed.digest([a.copy()])


@pytest.mark.parametrize("call, message", [
    (dict(coordinator="nohost"), "is not HOST:PORT"),
    (dict(coordinator="127.0.0.1:0", num_processes=2, process_id=0), "port must be in 1..65535"),
    (dict(coordinator="127.0.0.1:7777"), "needs num_processes and process_id"),
    (dict(coordinator="127.0.0.1:7777", num_processes=0, process_id=0), "num_processes=0"),
    (dict(coordinator="127.0.0.1:7777", num_processes=2, process_id=2), "process_id=2 must be in [0, 2)"),
    (dict(coordinator="127.0.0.1:7777", num_processes=2, process_id=0, timeout_s=0), "timeout_s=0"),
])
def test_initialize_refuses_bad_arguments_before_connecting(call, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        distributed.initialize_distributed(**call)
    assert not jax.distributed.is_initialized()
