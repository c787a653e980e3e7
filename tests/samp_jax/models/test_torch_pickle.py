"""PyTorch weight files read without torch: files `torch.save` wrote (tests/golden, by
`tools/make_golden.py`) in both of its layouts, HF checkpoints saved as `pytorch_model.bin`
against HF's own logits, and damaged or hostile files refused before anything runs."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import sys
import types
import zipfile

import ml_dtypes
import numpy as np
import pytest

from samp_jax.models import load_pretrained
from samp_jax.models.errors import CheckpointError
from samp_jax.models.torch_pickle import LEGACY_MAGIC, LEGACY_PROTOCOL, read_torch_pickle
from tests.helpers import GOLDEN

PICKLES = GOLDEN / "torch_pickle"
LAYOUTS = ("zip.bin", "legacy.bin")


# ------------------------------------------------------------------------ what torch wrote
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_dtype_and_view_reads_as_torch_wrote_it(layout):
    state = read_torch_pickle(PICKLES / layout)
    expected = np.load(PICKLES / "expected.npz")
    assert sorted(state) == sorted(expected.files)
    for name in expected.files:
        got = state[name]
        want = expected[name]
        if name == "bf16":
            assert got.dtype == ml_dtypes.bfloat16
            got = got.astype(np.float32)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.flags.c_contiguous and got.flags.writeable, name  # a copy, not a file view
    # views of one storage come back as their own values, not the storage's start
    np.testing.assert_array_equal(state["transposed"], state["base"].T)
    np.testing.assert_array_equal(state["row"], state["base"][2])
    np.testing.assert_array_equal(state["every_other"], state["base"][:, ::2])


@pytest.mark.parametrize("head", ["tiny_seqcls", "tiny_tokcls"])
@pytest.mark.parametrize("layout", ["torch", "torch_legacy"])
def test_an_hf_pytorch_checkpoint_gives_hf_logits(head, layout):
    golden = np.load(GOLDEN / head / "golden.npz")
    model = load_pretrained(GOLDEN / head / layout)
    from_safetensors = load_pretrained(GOLDEN / head / "safetensors")
    logits = np.asarray(model(*golden_inputs_of(golden)))
    np.testing.assert_array_equal(logits, np.asarray(from_safetensors(*golden_inputs_of(golden))))
    np.testing.assert_allclose(logits, golden["logits"], atol=1e-5)


def golden_inputs_of(golden):
    """The inputs of a tiny head's golden (unprefixed keys, unlike `tests.helpers.golden_inputs`)."""
    return tuple(golden[key] for key in ("input_ids", "attention_mask", "token_type_ids"))


def test_a_sharded_pytorch_checkpoint_reads_every_shard(tmp_path):
    source = read_torch_pickle(GOLDEN / "tiny_seqcls" / "torch" / "pytorch_model.bin")
    folder = tmp_path / "sharded"
    shutil.copytree(GOLDEN / "tiny_seqcls" / "torch", folder)
    (folder / "pytorch_model.bin").unlink()
    names = sorted(source)
    shards = {"pytorch_model-00001-of-00002.bin": names[::2],
              "pytorch_model-00002-of-00002.bin": names[1::2]}
    for shard, keys in shards.items():  # each shard is one of torch's own files, re-packed
        _repack(GOLDEN / "tiny_seqcls" / "torch" / "pytorch_model.bin", folder / shard, keys)
    weight_map = {key: shard for shard, keys in shards.items() for key in keys}
    (folder / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    golden = np.load(GOLDEN / "tiny_seqcls" / "golden.npz")
    logits = np.asarray(load_pretrained(folder)(*golden_inputs_of(golden)))
    np.testing.assert_allclose(logits, golden["logits"], atol=1e-5)
    (folder / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(FileNotFoundError, match="PyTorch shard .*00002-of-00002.bin is missing"):
        load_pretrained(folder)


@pytest.mark.parametrize("index", ["pytorch_model.bin.index.json", "model.safetensors.index.json"])
@pytest.mark.parametrize("shard", ["../outside.bin", "/etc/passwd", "sub/shard.bin", "..", ""])
def test_a_shard_index_cannot_name_a_file_outside_its_folder(tmp_path, index, shard):
    folder = tmp_path / "model"
    shutil.copytree(GOLDEN / "tiny_seqcls" / "torch", folder)
    (folder / "pytorch_model.bin").unlink()
    (folder / index).write_text(json.dumps({"weight_map": {"classifier.bias": shard}}))
    with pytest.raises(CheckpointError, match=rf"{index} names shard .*; a shard is a file name in "
                                              "the index's own folder"):
        load_pretrained(folder)


# --------------------------------------------------------------------------- refusals
class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _zip_with_pickle(source, target, data_pkl: bytes) -> None:
    """`source` (a torch zip archive) with its data.pkl replaced."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, data_pkl if name.endswith("/data.pkl") else old.read(name))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_pickle_that_would_run_a_command_is_refused_and_runs_nothing(layout, tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps({"weight": _Hostile(marker)}, protocol=2)
    bad = tmp_path / "pytorch_model.bin"
    if layout == "zip.bin":
        _zip_with_pickle(PICKLES / layout, bad, payload)
    else:  # the legacy stream's first pickles, then the hostile object
        bad.write_bytes(_legacy(payload, b""))
    with pytest.raises(CheckpointError, match=rf"{bad} names (posix|os)\.system in its pickle; a "
                                              "weight file needs only tensors.*nothing from it was run"):
        read_torch_pickle(bad)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["builtins.eval", "torch.load", "numpy.core.multiarray._reconstruct"])
def test_only_the_names_a_state_dict_needs_resolve(name, tmp_path):
    module, attribute = name.rsplit(".", 1)
    payload = b"\x80\x02c" + f"{module}\n{attribute}\n".encode() + b"."  # PROTO 2, GLOBAL, STOP
    bad = tmp_path / "w.bin"
    _zip_with_pickle(PICKLES / "zip.bin", bad, payload)
    with pytest.raises(CheckpointError, match=rf"names {module}\.{attribute} in its pickle"):
        read_torch_pickle(bad)


@pytest.mark.parametrize("name", ["torch._utils._rebuild_qtensor", "torch.UInt16Storage",
                                  "torch._utils._rebuild_tensor_v3"])
def test_tensors_of_a_dtype_or_layout_not_read_are_named_as_such(name, tmp_path):
    module, attribute = name.rsplit(".", 1)
    payload = b"\x80\x02c" + f"{module}\n{attribute}\n".encode() + b"."
    bad = tmp_path / "w.bin"
    _zip_with_pickle(PICKLES / "zip.bin", bad, payload)
    with pytest.raises(CheckpointError, match=rf"holds tensors that need {module}\.{attribute}: a "
                                              "dtype or layout samp-jax does not read"):
        read_torch_pickle(bad)


def _fake_torch_pickle(objects: dict, wrap=lambda state: state) -> bytes:
    """A data.pkl as torch writes it, naming torch's functions through stand-in modules (the
    test's own pickler; torch is not needed): `objects` maps names to
    `(storage key, dtype name, numel, offset, size, stride)`; `wrap(state dict)` is the object
    pickled (the state dict itself by default)."""
    utils = types.ModuleType("torch._utils")
    torch = types.ModuleType("torch")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage_types = {}
    for _, dtype, *_ in objects.values():
        storage_types[dtype] = type(dtype, (), {"__module__": "torch"})
        setattr(torch, dtype, storage_types[dtype])

    class Storage:
        def __init__(self, key, dtype, numel):
            self.pid = ("storage", storage_types[dtype], key, "cpu", numel)

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, {})

        def __reduce__(self):
            return _rebuild_tensor_v2, self.args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return obj.pid if isinstance(obj, Storage) else None

    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        out = io.BytesIO()
        Pickler(out, protocol=2).dump(wrap({name: Tensor(Storage(key, dtype, numel), offset, size, stride)
                                            for name, (key, dtype, numel, offset, size, stride)
                                            in objects.items()}))
        return out.getvalue()
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _archive(target, data_pkl: bytes, storages: dict[str, bytes], byteorder=b"little", *,
             compression=zipfile.ZIP_STORED, extra=()) -> None:
    """A torch.save-style archive (`extra`: more `(name, bytes)` entries, written last)."""
    with zipfile.ZipFile(target, "w", compression) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", byteorder)
        archive.writestr("archive/version", b"3\n")
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw)
        for name, raw in extra:
            archive.writestr(name, raw)


def test_the_test_pickler_writes_what_the_reader_reads(tmp_path):
    good = tmp_path / "good.bin"
    values = np.arange(12, dtype=np.float32)
    _archive(good, _fake_torch_pickle({"w": ("0", "FloatStorage", 12, 2, (2, 3), (1, 4))}),
             {"0": values.tobytes()})
    np.testing.assert_array_equal(read_torch_pickle(good)["w"],
                                  np.lib.stride_tricks.as_strided(values[2:], (2, 3), (4, 16)))


@pytest.mark.parametrize("offset, size, stride, problem", [
    (0, (4, 4), (4, 1), r"tensor 'w' \(size \(4, 4\), stride \(4, 1\), offset 0\) reaches past "
                        r"its storage of 12 elements"),
    (12, (1,), (1,), r"reaches past its storage of 12 elements"),
    (0, (3, 4), (4, 1, 1), r"has size \(3, 4\), stride \(4, 1, 1\)"),
    (0, (3, 4), (-4, 1), r"has size \(3, 4\), stride \(-4, 1\)"),
    (-1, (2,), (1,), r"offset -1, which are not a tensor's"),
])
def test_a_tensor_outside_its_storage_is_refused(tmp_path, offset, size, stride, problem):
    bad = tmp_path / "bad.bin"
    _archive(bad, _fake_torch_pickle({"w": ("0", "FloatStorage", 12, offset, size, stride)}),
             {"0": np.zeros(12, np.float32).tobytes()})
    with pytest.raises(CheckpointError, match=problem):
        read_torch_pickle(bad)


def test_damaged_storages_and_archives_are_refused(tmp_path):
    pkl = _fake_torch_pickle({"w": ("0", "HalfStorage", 6, 0, (6,), (1,))})
    cases = {
        "short.bin": ({"0": b"\0" * 11}, b"little", r"storage 0 has 11 bytes, expected 12 "
                                                    r"\(6 × float16\); the file is truncated"),
        "missing.bin": ({}, b"little", r"has no data for storage 0 \(archive/data/0\)"),
        "big.bin": ({"0": b"\0" * 12}, b"big", "holds big-endian tensors"),
    }
    for name, (storages, order, problem) in cases.items():
        _archive(tmp_path / name, pkl, storages, order)
        with pytest.raises(CheckpointError, match=problem):
            read_torch_pickle(tmp_path / name)
    cut = tmp_path / "cut.bin"
    cut.write_bytes((PICKLES / "zip.bin").read_bytes()[:700])
    with pytest.raises(CheckpointError, match=rf"{cut} is"):
        read_torch_pickle(cut)
    cut_legacy = tmp_path / "cut_legacy.bin"
    for cut_bytes in (1, 40):  # into the last storage's bytes, and into its element count
        cut_legacy.write_bytes((PICKLES / "legacy.bin").read_bytes()[:-cut_bytes])
        with pytest.raises(CheckpointError, match=r"(storage \w+ has \d+ bytes, expected \d+ .*"
                                                  r"|ends before storage \w+; )the file is truncated"):
            read_torch_pickle(cut_legacy)
    text = tmp_path / "text.bin"
    text.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n")
    with pytest.raises(CheckpointError, match="neither a zip archive nor a legacy torch.save stream"):
        read_torch_pickle(text)


@pytest.mark.parametrize("obj, problem", [
    ([1, 2], "holds a list, not a state dict"),
    ({"w": 3}, r"has 'w' = a int, not a tensor"),
    ({"nested": {"w": 1}}, r"has 'nested' = a dict, not a tensor"),
])
def test_an_object_that_is_not_a_flat_state_dict_is_refused(tmp_path, obj, problem):
    bad = tmp_path / "w.bin"
    _zip_with_pickle(PICKLES / "zip.bin", bad, pickle.dumps(obj, protocol=2))
    with pytest.raises(CheckpointError, match=problem):
        read_torch_pickle(bad)


def test_a_training_checkpoint_is_named_with_the_key_its_weights_are_under(tmp_path):
    """A PyTorch Lightning checkpoint saved as pytorch_model.bin: {'epoch': ..., 'state_dict':
    {...}}. It is refused (nothing is loaded from it), saying what it is and what to save."""
    ckpt = tmp_path / "pytorch_model.bin"
    tensors = {"model.bert.w": ("0", "FloatStorage", 4, 0, (4,), (1,))}
    _archive(ckpt, _fake_torch_pickle(tensors, lambda state: {"epoch": 3, "global_step": 9,
                                                              "state_dict": state}),
             {"0": bytes(16)})
    with pytest.raises(CheckpointError, match=r"is a training checkpoint \(a dict of \['epoch', "
                       r"'global_step', 'state_dict'\]\), not a state dict: its weights are under "
                       r"'state_dict'\. .*save_pretrained"):
        read_torch_pickle(ckpt)


# ------------------------------------------------------------- hostile sizes and archives
def _legacy(data_pkl: bytes, tail: bytes) -> bytes:
    """A legacy torch.save stream: its three header pickles, the object, then `tail`."""
    head = b"".join(pickle.dumps(v, protocol=2) for v in (LEGACY_MAGIC, LEGACY_PROTOCOL,
                                                           {"little_endian": True}))
    return head + data_pkl + tail


def test_a_broadcast_tensor_cannot_claim_memory_its_storage_does_not_hold(tmp_path):
    bad = tmp_path / "w.bin"
    _archive(bad, _fake_torch_pickle({"w": ("0", "FloatStorage", 1, 0, (10**6, 10**6), (0, 0))}),
             {"0": np.zeros(1, np.float32).tobytes()})
    with pytest.raises(CheckpointError, match=r"tensor 'w' has 1000000000000 elements, more than "
                                              r"its storage's 1"):
        read_torch_pickle(bad)


def test_many_names_over_one_storage_cannot_multiply_its_bytes(tmp_path):
    bad = tmp_path / "w.bin"
    names = {f"w{i}": ("0", "FloatStorage", 1024, 0, (1024,), (1,)) for i in range(5)}
    _archive(bad, _fake_torch_pickle(names), {"0": np.zeros(1024, np.float32).tobytes()})
    with pytest.raises(CheckpointError, match=r"tensors that together copy more than 4 times the "
                                              r"bytes of its storages"):
        read_torch_pickle(bad)
    tied = tmp_path / "tied.bin"  # tied weights: two names, one storage, are a state dict's own
    _archive(tied, _fake_torch_pickle({k: names[k] for k in ("w0", "w1")}),
             {"0": np.arange(1024, dtype=np.float32).tobytes()})
    state = read_torch_pickle(tied)
    np.testing.assert_array_equal(state["w0"], state["w1"])


def test_a_size_one_dimension_may_carry_any_stride(tmp_path):
    odd = tmp_path / "w.bin"  # torch ignores the stride of a size-1 dimension, however large
    _archive(odd, _fake_torch_pickle({"w": ("0", "FloatStorage", 4, 1, (1, 3), (2**70, 1))}),
             {"0": np.arange(4, dtype=np.float32).tobytes()})
    np.testing.assert_array_equal(read_torch_pickle(odd)["w"], [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_a_compressed_entry_is_refused_before_it_is_inflated(tmp_path, compression):
    bomb = tmp_path / "w.bin"
    _archive(bomb, _fake_torch_pickle({"w": ("0", "FloatStorage", 4, 0, (4,), (1,))}),
             {"0": bytes(16)}, compression=compression)
    with pytest.raises(CheckpointError, match=r"has archive/[a-z/.]+ compressed or encrypted; "
                                              r"torch.save stores every entry as it is"):
        read_torch_pickle(bomb)


@pytest.mark.filterwarnings("ignore:Duplicate name")  # zipfile's warning when writing it
def test_an_entry_named_twice_is_refused(tmp_path):
    bad = tmp_path / "w.bin"
    _archive(bad, _fake_torch_pickle({"w": ("0", "FloatStorage", 4, 0, (4,), (1,))}),
             {"0": bytes(16)}, extra=[("archive/data/0", np.full(4, 9, np.float32).tobytes())])
    with pytest.raises(CheckpointError, match=r"names \['archive/data/0'\] twice in its archive"):
        read_torch_pickle(bad)


def test_an_encrypted_entry_is_refused(tmp_path):
    bad = tmp_path / "w.bin"
    _archive(bad, _fake_torch_pickle({"w": ("0", "FloatStorage", 4, 0, (4,), (1,))}), {"0": bytes(16)})
    raw = bytearray(bad.read_bytes())
    for header in (b"PK\x03\x04", b"PK\x01\x02"):  # the local and central headers' flags
        at = raw.find(header)
        raw[at + (6 if header == b"PK\x03\x04" else 8)] |= 1
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"compressed or encrypted"):
        read_torch_pickle(bad)


def test_an_archive_without_a_version_entry_is_not_torchs(tmp_path):
    bad = tmp_path / "w.bin"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("archive/data.pkl", _fake_torch_pickle({}))
    with pytest.raises(CheckpointError, match=r"is a zip archive but not a torch.save file"):
        read_torch_pickle(bad)


def test_a_legacy_file_ending_like_a_zip_archive_is_read_as_legacy(tmp_path):
    # torch decides by the first bytes; a zip end-of-archive record inside the last tensor
    # (found by `zipfile.is_zipfile`) does not make the file an archive
    data = np.frombuffer(b"PK\x05\x06" + bytes(20), np.float32)
    pkl = _fake_torch_pickle({"w": ("0", "FloatStorage", len(data), 0, (len(data),), (1,))})
    path = tmp_path / "legacy.bin"
    path.write_bytes(_legacy(pkl, pickle.dumps(["0"], protocol=2)
                             + struct.pack("<q", len(data)) + data.tobytes()))
    np.testing.assert_array_equal(read_torch_pickle(path)["w"], data)


@pytest.mark.parametrize("keys, count, problem", [
    ([], None, r"lists storages \[\] after its object, but its tensors use \['0'\]"),
    (["0"], 2**60, r"storage 0 has 2\*\*60|storage 0 has \d+ elements, its record says"),
])
def test_a_legacy_stream_s_storages_must_be_listed_and_fit_the_file(tmp_path, keys, count, problem):
    numel = 4 if count is None else count
    pkl = _fake_torch_pickle({"w": ("0", "FloatStorage", numel, 0, (4,), (1,))})
    tail = pickle.dumps(keys, protocol=2) + (b"" if count is None else struct.pack("<q", count))
    path = tmp_path / "legacy.bin"
    path.write_bytes(_legacy(pkl, tail))
    with pytest.raises(CheckpointError, match=r"storage 0 has \d+ bytes, expected \d+|" + problem):
        read_torch_pickle(path)


def test_the_pickle_cannot_rewrite_a_storage_it_was_given(tmp_path):
    # BUILD on the storage stand-in (here: make it its own base, an endless view)
    pkl = _fake_torch_pickle({"w": ("0", "FloatStorage", 4, 0, (4,), (1,))})
    persid = pkl.index(b"Q")  # right after the storage record: BUILD {"base": <it>}
    rewritten = pkl[:persid + 1] + b"q\xc8}(X\x04\x00\x00\x00baseh\xc8ub" + pkl[persid + 1:]
    bad = tmp_path / "w.bin"
    _archive(bad, rewritten, {"0": bytes(16)})
    with pytest.raises(CheckpointError, match=r"sets the state of a Storage, which a weight file "
                                              r"never does"):
        read_torch_pickle(bad)


@pytest.mark.parametrize("payload", [
    b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"x.",  # BINBYTES8 of 4 EiB
    b"\x80\x02" + b"(" * 100_000 + b".",  # marks nested past any stack
])
def test_a_pickle_that_asks_for_absurd_resources_is_a_checkpoint_error(tmp_path, payload):
    bad = tmp_path / "w.bin"
    _archive(bad, payload, {})
    with pytest.raises(CheckpointError, match=r"is not a readable PyTorch weight file"):
        read_torch_pickle(bad)


# ------------------------------------------------------------------------------ helpers
def _repack(source, target, keys) -> None:
    """Writes a zip archive holding only `keys` of torch's file `source`: its pickle rewritten
    by the test pickler, its storages copied byte for byte."""
    with zipfile.ZipFile(source) as archive:
        prefix = next(n for n in archive.namelist() if n.endswith("/data.pkl"))[:-len("data.pkl")]
        records = _records(archive.read(f"{prefix}data.pkl"))
        chosen = {k: records[k] for k in keys}
        storages = {r[0]: archive.read(f"{prefix}data/{r[0]}") for r in chosen.values()}
    _archive(target, _fake_torch_pickle(chosen), storages)


def _records(data_pkl: bytes) -> dict:
    """`name -> (key, dtype, numel, offset, size, stride)` of a torch data.pkl, read with a
    recording unpickler."""
    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            if name == "OrderedDict":
                return dict
            if name.startswith("_rebuild"):
                return lambda storage, offset, size, stride, *rest: (*storage, offset, size, stride)
            return name

        def persistent_load(self, pid):
            return (str(pid[2]), pid[1], pid[4])
    return Recorder(io.BytesIO(data_pkl)).load()
