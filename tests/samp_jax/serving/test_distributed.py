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
from samp_jax.serving import distributed, rendezvous
from tests.helpers import ROOT

TINY = dict(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
            max_position_embeddings=64)
WORDS = "good great fine bad awful poor movie film plot day night city river happy dull".split()


LABELS = ("neg", "neu", "pos")


@pytest.fixture(scope="module")
def files(tmp_path_factory, minilm_dir):
    """A tiny random BERT classifier (MiniLM's tokenizer) whose class differs from row to row,
    and a 90-row labelled CSV that it scores about 3 in 4 right.

    A tiny random encoder gives nearly the same first-token state to every row, so the kernels
    are drawn 20x wider (rows then move the logits by about 0.5) and the classifier's bias is
    centred on these rows' logits: the argmax then varies from row to row. The labels are its
    own classes, one row in four rotated; a row scored by the wrong process would change the
    per-row outputs, the labels and the metric."""
    root = tmp_path_factory.mktemp("distributed")
    config = sj.EncoderConfig(**TINY)
    rngs = nnx.Rngs(3)
    model = sj.EncoderModel(config, make_head("sequence_classification", config,
                                              num_labels=len(LABELS), rngs=rngs), rngs=rngs)
    for path, param in nnx.iter_graph(model):
        if isinstance(param, nnx.Param) and path[-1] == "kernel":
            param.set_value(param.get_value() * 20)
    rng = np.random.default_rng(0)
    rows = [" ".join(rng.choice(WORDS, rng.integers(3, 30))) for _ in range(90)]
    tokenizer = sj.Tokenizer.from_pretrained(minilm_dir)
    encoded = tokenizer(rows)
    logits = np.asarray(model(*(np.asarray(encoded[k]) for k in ("input_ids", "attention_mask",
                                                                  "token_type_ids"))))
    bias = model.head.classifier.bias
    bias.set_value(bias.get_value() - logits.mean(axis=0))
    classes = (logits - logits.mean(axis=0)).argmax(axis=1)
    labels = [(c + (i % 4 == 0)) % len(LABELS) for i, c in enumerate(classes)]
    save_pretrained(model, root / "model", tokenizer_dir=minilm_dir, labels=LABELS)
    (root / "data.csv").write_text("text,label\n" + "".join(
        f"{text},{LABELS[label]}\n" for text, label in zip(rows, labels)))
    return root


def _assert_rows_differ(labels) -> None:
    """The outputs depend on the row: every class is predicted for at least 10% of the rows."""
    counts = np.bincount(np.asarray(labels), minlength=len(LABELS))
    assert counts.min() >= 0.1 * len(labels), counts


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


# a float variant and a static INT8 one (its calibration is taken across the processes)
EVAL = ["eval", "--precision", "fp16,fully_quant", "--activation", "static", "--json"]


@pytest.mark.slow
def test_eval_on_two_processes_of_two_devices_equals_one_process(files, tmp_path):
    args = [*EVAL, "--model", str(files / "model"), "--data", str(files / "data.csv")]
    (rc, single, err), = _run_processes(args, processes=1, devices=1, cwd=tmp_path)
    assert rc == 0, err
    runs = _run_processes(args, processes=2, devices=2, cwd=tmp_path)
    assert [rc for rc, _, _ in runs] == [0, 0], [err[-2000:] for _, _, err in runs]
    assert runs[1][1] == ""  # the result is reported once, by process 0
    # and so are its warnings (the small calibration's): the others compute the same and stay quiet
    assert "samp-jax eval: warning: calibration saw only" in runs[0][2]
    assert "warning:" not in runs[1][2], runs[1][2][-2000:]
    one, two = json.loads(single), json.loads(runs[0][1])
    assert len(two["rows"]) == 3 and two["examples"] == one["examples"] > 0
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
    result = json.loads(runs[0][1])
    assert (result["predictions"], result["rows"]) == (str(tmp_path / "two.jsonl"), 90)
    assert result["truncated"] == sum('"truncated": true' in line for line in
                                      (tmp_path / "two.jsonl").read_text().splitlines())
    assert runs[1][1] == ""
    one = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert len(two) == 90 and [r["text"] for r in two] == [r["text"] for r in one]
    _assert_rows_differ([LABELS.index(r["label"]) for r in one])
    for a, b in zip(one, two):  # each process ran its own rows; the same numbers come back, to
        # float32 rounding: a row's length bucket depends on its company (measured 1.7e-6)
        assert a["label"] == b["label"]
        np.testing.assert_allclose(b["score"], a["score"], rtol=1e-5)
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
    # every row's logits, whichever process ran it, bit for bit: FP32, and INT8 (per-token
    # dynamic) too, whose quantization is one computation under jit and inside shard_map
    # (`pallas_kernels.numerics.divide_by_scale`; test_sharding's ties test)
    for precision in ("fp32", "int8"):
        one, *two = (np.asarray(r["outputs"][precision]) for r in results)
        assert one.shape == (90, len(LABELS))
        _assert_rows_differ(one.argmax(axis=1))
        for other in two:
            np.testing.assert_array_equal(other, one, err_msg=precision)


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("command, option, values, shown", [
    ("predict", "--max-length", ("8", "16"), ("8", "16")),  # rows cut elsewhere by one process
    # one process would run a collective the other does not
    ("eval", "--precision", ("fp16,fp8", "fp16"), ("'fp16,fp8'", "'fp16'"))])
def test_processes_given_different_options_stop_at_once_naming_the_option(
        files, tmp_path, command, option, values, shown):
    """Options are compared when the processes join, before any work: each process ends with
    one line naming the option and both values, nothing is written."""
    port = _free_port()
    where = (["--out", str(tmp_path / "p.jsonl")] if command == "predict" else [])
    started = [_command([command, "--model", str(files / "model"), "--data", str(files / "data.csv"),
                         *where, option, value, "--coordinator", f"127.0.0.1:{port}",
                         "--num-processes", "2", "--process-id", str(i)], devices=1, cwd=tmp_path)
               for i, value in enumerate(values)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in started]
    for i, (out, err, rc) in enumerate(results):
        assert rc == 1 and "Traceback" not in err, err
        assert (f"(process {i}): error: {option} differs between processes: process 1 has "
                f"{shown[1]}, process 0 has {shown[0]}") in err, err
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.slow
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
    assert first.returncode == 1, err[-3000:]
    assert elapsed < 30, f"process 0 took {elapsed:.0f} s to stop"
    assert "Traceback" not in err and "Check failure" not in err
    # the collective in flight failed, or the watchdog saw the connection close: our one line
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "(process 0): error: another process of this distributed run " \
        "stopped" in errors[0], err[-3000:]
    second.communicate()


@pytest.mark.slow
def test_a_dead_process_0_stops_the_others_with_one_line(tmp_path):
    """Process 0 hosts the coordinator: its death must not make jaxlib abort the survivors."""
    port, start = _free_port(), time.monotonic()
    first, second = (_join_worker(port, 2, i, timeout_s=60, stay_s=120) for i in range(2))
    assert _json_line(first.stdout)["process"] == 0
    first.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    out, err = second.communicate(timeout=60)
    elapsed = time.monotonic() - killed_at
    assert second.returncode == 1, err[-3000:]
    assert elapsed < 15, f"process 1 took {elapsed:.0f} s to stop"
    assert err.strip().splitlines()[-1] == ("samp_jax: error: another process of this "
                                            "distributed run stopped: process 0 closed its "
                                            "connection (see its log)"), err[-3000:]
    assert "Check failure" not in err and time.monotonic() - start < 120
    first.communicate()


@pytest.mark.slow
def test_a_silent_peer_stops_the_others_after_the_heartbeat_timeout(tmp_path):
    """A peer that stops answering (SIGSTOP: its connections stay open, as on a lost host)."""
    port = _free_port()
    first, second = (_join_worker(port, 2, i, timeout_s=60, stay_s=120, heartbeat_s=3)
                     for i in range(2))
    assert _json_line(first.stdout)["process"] == 0
    second.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    _, err = first.communicate(timeout=60)
    elapsed = time.monotonic() - stopped_at
    second.kill()
    second.communicate()
    assert first.returncode == 1, err[-3000:]
    # the peer's last ping may have come up to one ping interval before it stopped
    assert 3 - rendezvous.PING_EVERY_S - 0.5 < elapsed < 15, f"process 0 took {elapsed:.1f} s to stop"
    assert err.strip().splitlines()[-1] == (
        "samp_jax: error: another process of this distributed run went silent: no word from "
        "process 1 for 3 s (the heartbeat timeout); its host or network may be down"), err[-3000:]


# ------------------------------------------------- joining: one line, exit 1, bounded time
def _join_worker(port: int, processes: int, process_id: int, *, timeout_s: int,
                 stay_s: float = 0, heartbeat_s: int = 10) -> subprocess.Popen:
    worker = Path(__file__).with_name("join_worker.py")
    env = os.environ | {"JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1",
                        "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(worker), str(port), str(processes),
                             str(process_id), str(timeout_s), str(stay_s), str(heartbeat_s)],
                            env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _json_line(lines) -> dict:
    """The first JSON line of a worker's output (the collective library may print too)."""
    return json.loads(next(line for line in lines if line.startswith("{")))


def _predict_process(files, tmp_path, port: int, processes: int, process_id: int,
                     timeout_s: int = 3) -> subprocess.Popen:
    return _command(["predict", "--model", str(files / "model"), "--data",
                     str(files / "data.csv"), "--out", str(tmp_path / f"p{process_id}.jsonl"),
                     "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes),
                     "--process-id", str(process_id), "--connect-timeout", str(timeout_s)],
                    devices=1, cwd=tmp_path)


def _one_line_exit_1(process: subprocess.Popen, started: float, timeout_s: int) -> str:
    """The process's single stderr line, after checking exit 1 within the connect timeout
    (plus the imports: up to a minute on a shared, loaded 2-core machine)."""
    _, err = process.communicate(timeout=timeout_s + 240)
    assert process.returncode == 1, err[-3000:]
    assert time.monotonic() - started < timeout_s + 180
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "could not join the distributed run at 127.0.0.1:" in lines[0], err
    return lines[0]


@pytest.mark.slow
def test_a_peer_that_never_starts_ends_process_0_in_one_line(files, tmp_path):
    started = time.monotonic()
    line = _one_line_exit_1(_predict_process(files, tmp_path, _free_port(), 2, 0), started, 3)
    assert line.startswith("samp-jax predict: error: ")
    assert line.endswith("process(es) [1] of 2 did not join within 3 s (the connect timeout)")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_an_out_that_process_0_refuses_stops_the_others_at_once_not_at_the_timeout(files, tmp_path):
    """Process 0 alone checks --out; it checks it after joining, so its stop is a dead peer
    to the others within seconds, not a join that waits out --connect-timeout (200 s)."""
    (tmp_path / "folder.jsonl").mkdir()  # a folder where the predictions file goes
    port = _free_port()
    started = [_command(["predict", "--model", str(files / "model"), "--data",
                         str(files / "data.csv"), "--out", str(tmp_path / ("folder.jsonl" if i == 0
                                                                            else "p.jsonl")),
                         "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                         "--process-id", str(i), "--connect-timeout", "200",
                         "--heartbeat-timeout", "20"], devices=1, cwd=tmp_path)
               for i in range(2)]
    _, err0 = started[0].communicate(timeout=300)
    stopped = time.monotonic()
    _, err1 = started[1].communicate(timeout=300)
    assert started[0].returncode == 1 and "--out" in err0.strip().splitlines()[-1], err0
    assert started[1].returncode == 1 and "another process of this distributed run stopped" in err1, err1
    assert time.monotonic() - stopped < 60, "process 1 waited for the connect timeout"
    assert "Traceback" not in err0 + err1 and not (tmp_path / "p.jsonl").exists()


@pytest.mark.slow
def test_a_coordinator_that_never_starts_ends_the_others_in_one_line(files, tmp_path):
    started = time.monotonic()
    line = _one_line_exit_1(_predict_process(files, tmp_path, _free_port(), 2, 1), started, 3)
    assert "no process 0 answered at 127.0.0.1:" in line and "within 3 s" in line


@pytest.mark.slow
@pytest.mark.parametrize("ids", [(0, 1, 1), (0, 0)], ids=["two-1", "two-0"])
def test_an_id_given_twice_stops_every_process_in_one_line(ids, tmp_path):
    port, started = _free_port(), time.monotonic()
    workers = []
    for i in ids:  # the first process 0 listens before the second one tries to
        workers.append(_join_worker(port, len(ids), i, timeout_s=20))
        time.sleep(0.5 if i == 0 else 0)
    for worker in workers:
        line = _one_line_exit_1(worker, started, 20)
        assert f"--process-id {ids[-1]} is given to two processes" in line, line


@pytest.mark.slow
def test_a_coordinator_port_in_use_is_one_line(files, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port, started = taken.getsockname()[1], time.monotonic()
        line = _one_line_exit_1(_predict_process(files, tmp_path, port, 2, 0), started, 3)
    assert f"the port of 127.0.0.1:{port} is in use" in line


@pytest.mark.slow
def test_processes_that_disagree_on_the_count_stop_in_one_line(tmp_path):
    port, started = _free_port(), time.monotonic()
    first, second = _join_worker(port, 2, 0, timeout_s=20), _join_worker(port, 3, 1, timeout_s=20)
    for worker in (first, second):
        assert "disagree on --num-processes" in _one_line_exit_1(worker, started, 20)


@pytest.mark.slow
def test_the_coordinator_listens_only_on_the_address_it_was_given(tmp_path):
    port = _free_port()
    workers = [_join_worker(port, 2, i, timeout_s=60) for i in range(2)]
    results = [_json_line(w.communicate(timeout=120)[0].splitlines()) for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    assert [r["devices"] for r in results] == [2, 2]
    for result in results:  # JAX's coordination service: 127.0.0.1 only, never * or [::]
        assert result["listening"] and set(result["listening"]) <= {"127.0.0.1",
                                                                      "::ffff:127.0.0.1"}, result


@pytest.mark.slow
@pytest.mark.parametrize("coordinator", ["10.0.0.1:7777", "auto"])
def test_a_remote_coordinator_needs_the_explicit_flag(coordinator, files, tmp_path):
    extra = [] if coordinator == "auto" else ["--num-processes", "2", "--process-id", "0"]
    p = _command(["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                  "--out", str(tmp_path / "p.jsonl"), "--coordinator", coordinator, *extra],
                 devices=1, cwd=tmp_path)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "--allow-remote-coordinator" in err and "Traceback" not in err
    assert "no authentication" in err


def test_is_loopback_tells_local_from_network_addresses():
    assert all(map(rendezvous.is_loopback, ["127.0.0.1", "127.5.0.1", "::1", "localhost"]))
    assert not any(map(rendezvous.is_loopback, ["10.0.0.1", "0.0.0.0", "::", "192.168.1.2"]))


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


def test_a_collective_that_fails_because_a_peer_left_is_said_so_whatever_its_type(monkeypatch):
    """`process_allgather` re-raises gloo's failure as a ValueError with XLA's status first;
    it is the peer's stop all the same. An ordinary error that mentions a peer is not."""
    from samp_jax.serving.distributed import describe_failure
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    gloo = ValueError("UNKNOWN: Gloo AllGather failed: [gloo/transport/tcp/pair.cc:547] "
                      "Connection closed by peer [127.0.0.1]:25315")
    assert describe_failure(gloo).startswith("another process of this distributed run stopped")
    assert describe_failure(ValueError("column 'peer' was not found")) is None
    assert describe_failure(ValueError("UNKNOWN: a bad model file")) is None
