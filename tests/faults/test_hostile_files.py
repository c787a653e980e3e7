"""Hostile files in model folders and data: a name that is a FIFO or a device, a listed file
longer than the manifest records, JSON nested deeper than Python reads or holding an integer
of thousands of digits. Each is refused in one line naming the file (and the row), before
anything waits, reads without end or allocates; nothing is read past what is needed to say so.

/dev/null stands for /dev/zero (both character devices): a test run without the fix then fails
on the message instead of reading forever. A FIFO is opened under an alarm, for the same
reason.
"""

import contextlib
import json
import os
import re
import shutil
import signal

import pytest

import samp_jax
from samp_jax import ConfigError, PrecisionMap, QuantizedModel, Tokenizer, load_pretrained, quantize
from samp_jax.tasks.files import read_inputs
from tests.helpers import GOLDEN

HF = GOLDEN / "families" / "bert" / "seqcls"  # a tiny BERT (2 layers, hidden 30) with a tokenizer
DEEP = "[" * 100_000 + "]" * 100_000
DEEP_MESSAGE = "JSON nested deeper than Python reads"
BIG = "1" + "0" * 5000
BIG_MESSAGE = r"an integer of 5001 digits, more than Python reads \(4300\)"
DEVICE = r"is a character device, as /dev/zero is, not a regular file"


@contextlib.contextmanager
def alarm(seconds: int = 10):
    """Raises TimeoutError in the test after `seconds` (an `open` of a FIFO waits forever)."""
    def expired(*_):
        raise TimeoutError(f"still waiting after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _as(folder, name, target):
    """`folder/name` replaced by a link to `target`."""
    (folder / name).unlink(missing_ok=True)
    (folder / name).symlink_to(target)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = samp_jax.load(HF)
    return quantize(model, PrecisionMap.preset("quant_ffn_only", 2)).save(
        tmp_path_factory.mktemp("hostile") / "q")


@pytest.fixture
def quantized(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "q")


@pytest.fixture
def hf(tmp_path):
    return shutil.copytree(HF, tmp_path / "hf")


# ------------------------------------------------------------------ not a regular file
@pytest.mark.parametrize("name", ["vocab.txt", "tokenizer.json", "model.safetensors", "quantization.json"])
def test_a_quantized_folder_file_that_is_a_device_is_named(quantized, name):
    _as(quantized, name, "/dev/null")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(quantized / name))} {DEVICE}"):
        samp_jax.load(quantized)


def test_a_listed_file_that_is_a_fifo_is_refused_without_waiting(quantized, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    _as(quantized, "vocab.txt", tmp_path / "fifo")
    with alarm(), pytest.raises(ValueError, match=rf"^{re.escape(str(quantized / 'vocab.txt'))} is a "
                                                  r"FIFO \(named pipe\), not a regular file; expected "
                                                  r"the file QuantizedModel.save wrote"):
        samp_jax.load(quantized)


def test_a_listed_file_longer_than_recorded_is_read_no_further(quantized):
    recorded = json.loads((quantized / "quantization.json").read_text())["files"]["vocab.txt"]["bytes"]
    with open(quantized / "vocab.txt", "ab") as f:
        f.write(b"x" * (4 << 20))
    with pytest.raises(samp_jax.CheckpointError, match=rf"vocab.txt does not match the manifest: "
                                                       rf"found more than {recorded} bytes \(read no further\)"):
        samp_jax.load(quantized)


def test_read_file_reads_at_most_one_byte_past_the_recorded_size(quantized):
    from samp_jax.ptq.folder import open_folder, read_file
    with open_folder(quantized) as fd:
        assert len(read_file(quantized, fd, "vocab.txt", 10)) == 11
        assert read_file(quantized, fd, "vocab.txt") == (quantized / "vocab.txt").read_bytes()
        assert read_file(quantized, fd, "absent.txt", 10) is None


@pytest.mark.parametrize("name", ["config.json", "tokenizer_config.json", "tokenizer.json",
                                  "vocab.txt", "model.safetensors"])
def test_an_hf_folder_file_that_is_a_device_is_named_not_taken_as_absent(hf, name):
    """A config.json linked to /dev/zero was 'not a model folder'; a tokenizer_config.json
    linked to it was skipped, and the tokenizer read without its options."""
    _as(hf, name, "/dev/null")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(hf / name))} {DEVICE}"):
        samp_jax.load(hf)


def test_an_hf_tokenizer_file_that_is_a_fifo_is_refused_without_waiting(hf, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    _as(hf, "tokenizer_config.json", tmp_path / "fifo")
    with alarm(), pytest.raises(ValueError, match=r"tokenizer_config.json is a FIFO \(named pipe\), "
                                                  r"not a regular file"):
        Tokenizer.from_pretrained(hf)


def test_a_link_that_loops_is_named(hf):
    (hf / "config.json").unlink()
    (hf / "config.json").symlink_to(hf / "config.json")
    with pytest.raises(ValueError, match=r"config.json cannot be opened \(Too many levels of "
                                         r"symbolic links\)"):
        samp_jax.load(hf)


# ------------------------------------------------------------ links whose target is gone
def _dangling(folder, name):
    """`folder/name` replaced by a link to a blob that is not there (an HF cache's snapshot
    copied without its blobs); returns the link's target."""
    target = f"../../blobs/{name}"
    _as(folder, name, target)
    return target


@pytest.mark.parametrize("name", ["quantization.json", "model.safetensors", "tokenizer.json",
                                  "vocab.txt"])
def test_a_quantized_folder_file_that_is_a_dangling_link_is_named_with_its_target(quantized, name):
    """It was 'not a model folder' (quantization.json) or 'has no ...': absent, not broken."""
    target = _dangling(quantized, name)
    with pytest.raises(FileNotFoundError, match=rf"^{re.escape(str(quantized / name))} is a "
                                                rf"symbolic link to {re.escape(target)}, which "
                                                r"does not exist"):
        samp_jax.load(quantized)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "model.safetensors",
                                  "tokenizer_config.json"])
def test_an_hf_folder_file_that_is_a_dangling_link_is_named_with_its_target(hf, name):
    target = _dangling(hf, name)
    with pytest.raises(samp_jax.SampJaxError, match=rf"^{re.escape(str(hf / name))} is a "
                                                    rf"symbolic link to {re.escape(target)}, "
                                                    r"which does not exist"):
        samp_jax.load(hf)


def test_a_model_folder_that_is_a_dangling_link_is_named_with_its_target(tmp_path):
    (tmp_path / "model").symlink_to(tmp_path / "gone", target_is_directory=True)
    with pytest.raises(FileNotFoundError, match=r"model is a symbolic link to .*gone, which does "
                                                r"not exist"):
        samp_jax.load(tmp_path / "model")


def test_quantized_weights_beside_an_hf_config_without_their_sidecar_are_named(quantized):
    """A quantized folder that lost quantization.json and got an HF config.json: its weights'
    header says what they are, where the HF reader listed missing and unexpected keys."""
    (quantized / "quantization.json").unlink()
    shutil.copyfile(HF / "config.json", quantized / "config.json")
    with pytest.raises(FileNotFoundError, match=rf"^{re.escape(str(quantized))} has no "
                                                r"quantization.json, and its model.safetensors "
                                                r"holds samp-jax quantized weights"):
        samp_jax.load(quantized)


# ------------------------------------------------------------ JSON Python cannot read
@pytest.mark.parametrize("text, message", [(DEEP, DEEP_MESSAGE),
                                           ('{"hidden_size": ' + BIG + "}", BIG_MESSAGE)])
def test_a_config_python_cannot_read_is_named(hf, text, message):
    (hf / "config.json").write_text(text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(hf / 'config.json'))}: {message}$"):
        load_pretrained(hf)


def test_a_config_that_states_a_key_twice_is_loaded_as_hf_loads_it_with_a_warning(hf):
    text = (hf / "config.json").read_text()
    config = json.loads(text)
    # a hand edit that left the old line: JSON readers (HF's too) keep the last value
    edited = text.replace('"num_labels"' if '"num_labels"' in text else '"hidden_act"',
                          f'"layer_norm_eps": 0.5, "layer_norm_eps": {config["layer_norm_eps"]}, '
                          + ('"num_labels"' if '"num_labels"' in text else '"hidden_act"'), 1)
    assert edited != text
    (hf / "config.json").write_text(edited)
    with pytest.warns(UserWarning, match=rf"^{re.escape(str(hf / 'config.json'))} states "
                                         r"'layer_norm_eps' more than once: its last value is used"):
        model = load_pretrained(hf)
    assert model.config.layer_norm_eps == config["layer_norm_eps"]


@pytest.mark.parametrize("name", ["tokenizer_config.json", "special_tokens_map.json"])
def test_a_tokenizer_file_python_cannot_read_is_named(hf, name):
    (hf / name).write_text(DEEP)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(hf / name))}: {DEEP_MESSAGE}$"):
        Tokenizer.from_pretrained(hf)


@pytest.mark.parametrize("text, message", [(DEEP, DEEP_MESSAGE),
                                           ('{"format_version": ' + BIG + "}", BIG_MESSAGE)])
def test_a_sidecar_python_cannot_read_is_named(quantized, text, message):
    (quantized / "quantization.json").write_text(text)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(quantized / 'quantization.json'))}: "
                                         rf"{message}$"):
        QuantizedModel.load(quantized)


def test_a_sidecar_over_the_limit_is_refused_unparsed(quantized):
    """Valid JSON padded past `SIDECAR_LIMIT` with spaces: refused by its size, read no further."""
    from samp_jax.ptq.folder import SIDECAR_LIMIT
    with open(quantized / "quantization.json", "ab") as f:
        f.write(b" " * SIDECAR_LIMIT)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(quantized / 'quantization.json'))} is "
                                         r"over 64 MiB, expected a sidecar of QuantizedModel.save"):
        QuantizedModel.load(quantized)


def test_a_sidecar_nested_as_deep_as_python_reads_is_refused_as_an_edit(quantized):
    """Just under the parser's limit: the repeated-key scan and the seal check walk it
    without overflowing the stack."""
    sidecar = json.loads((quantized / "quantization.json").read_text())
    text = json.dumps(sidecar)[:-1] + ', "extra": ' + "[" * 600 + "]" * 600 + "}"
    (quantized / "quantization.json").write_text(text)
    with pytest.raises(ValueError, match=r"quantization.json was edited after saving: extra"):
        QuantizedModel.load(quantized)


@pytest.mark.parametrize("row, message", [(DEEP, DEEP_MESSAGE), ('{"text": ' + BIG + "}", BIG_MESSAGE)])
def test_a_data_row_python_cannot_read_is_named_with_its_line(tmp_path, row, message):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "fine"}\n' + row + "\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: line 2 \(row 2\): {message}$"):
        read_inputs(path)
    path.write_text("[" + row + "]")  # one JSON array
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: {message}$"):
        read_inputs(path)


def test_a_repeated_key_is_still_found_at_any_depth():
    from samp_jax.core import strict_json
    value = strict_json.loads('{"a": [{"b": {"c": 1, "c": 2}}], "d": {"e": 1, "e": 2}}')
    assert strict_json.repeated_key(value) == ("a[0].b", "c")
    deep = strict_json.loads("[" * 900 + '{"k": 1, "k": 2}' + "]" * 900)
    assert strict_json.repeated_key(deep)[1] == "k"
