"""Data-parallel inference: each batch is split over the devices of a mesh, weights replicated.

`sharded_forward(model, mesh)` is the sharded twin of `forward.jit_forward(model)`: a
`batch -> output` function whose jitted body is a `jax.shard_map` over the batch axis. Every
device runs the whole model on its rows, so each `pallas_call` inside the model (the INT8 GEMM)
sees one device's shard, which is what Pallas needs. No collective runs inside the model.

    mesh = data_mesh()                                   # every device, one 'data' axis
    logits = sharded_forward(model, mesh)(batch)         # numpy in, numpy out
    evaluate(model, "snli", mesh=mesh)                   # or predict / run_batched(..., mesh=mesh)

A batch whose row count is not a multiple of the device count is padded with all-padding rows
(`attention_mask` 0) that are dropped from the result, so every row is computed exactly once.

Across hosts: start every process with `jax.distributed.initialize()` (before any other JAX
call), then make the same calls on every host. `data_mesh()` spans the global devices; inputs
become global arrays with `jax.make_array_from_callback`, so each process copies only the rows
of its own devices to them, and outputs are gathered to every process with
`multihost_utils.process_allgather`. This assumes every host runs the same data pipeline: the
same model weights, the same examples in the same order and the same batch size, so each
process can cut the same global batch (cheap for evaluation: tokenized splits are small).
In a distributed run (`samp_jax.serving.distributed`) that assumption is checked: the weights
once, and every batch, are compared across processes by digest, and a difference raises
`DistributedMismatchError` rather than mixing two models or two data sets.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from samp_jax.serving.distributed import check_same, digest, is_distributed, state_digest
from samp_jax.serving.forward import INPUT_KEYS, merged_call


def data_mesh(devices: Sequence[jax.Device] | None = None, axis: str = "data") -> Mesh:
    """A 1-D mesh named `axis` over `devices` (default: all global devices, every host's).

    The axis type is `Explicit`, chosen on purpose though it is also `jax.make_mesh`'s default
    in jax 0.11: the mesh equals what a caller gets from `jax.make_mesh((n,), (axis,))`, and the
    row sharding shows in array types (`jax.typeof(out).sharding.spec` is `P(axis, ...)`,
    where an `Auto` axis leaves the type unspecified and the placement to the compiler).
    `sharded_forward` states its in/out specs and is manual over every axis inside, so it
    works the same on a mesh with `Auto` axes.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("data_mesh needs at least one device, got none")
    return jax.make_mesh((len(devices),), (axis,), axis_types=(AxisType.Explicit,), devices=devices)


class ShardedForward:
    """`batch -> np.ndarray`, data parallel over `mesh.shape[axis]` devices (`sharded_forward`).

    Attributes:
      mesh: the mesh the batch is split over.
      axis: the mesh axis that splits the batch (rows); other mesh axes hold replicas.
      num_shards: `mesh.shape[axis]`; batches are padded to a multiple of it.
    """

    def __init__(self, model: nnx.Module, mesh: Mesh, *, axis: str = "data"):
        if axis not in mesh.axis_names:
            raise ValueError(f"{axis=} is not one of the mesh's axis names {mesh.axis_names}")
        self.mesh, self.axis, self.num_shards = mesh, axis, mesh.shape[axis]
        self._rows = NamedSharding(mesh, P(axis))
        graphdef, state = nnx.split(model)
        if is_distributed():  # each process places its own copy: they must be one model
            check_same(state_digest(model), "the model (its weights)")
        replicated = NamedSharding(mesh, P())
        # Placed once: every device keeps a full copy of the weights (built per process from
        # its own copy of the model, so no host ships weights to another).
        self._state = jax.tree.map(lambda leaf: _global_array(np.asarray(leaf), replicated), state)

        def per_shard(state, input_ids, attention_mask, token_type_ids):
            # [rows / num_shards, seq] on each device: the model (and its pallas_calls) runs here
            return merged_call(graphdef, state, input_ids, attention_mask, token_type_ids)

        self._forward = jax.jit(split_rows(per_shard, mesh, axis=axis))

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Runs the model on `batch` (`[rows, seq]` numpy arrays); returns `[rows, ...]`."""
        out = self._forward(self._state, *self._inputs(batch))
        out = np.asarray(out) if out.is_fully_addressable else \
            multihost_utils.process_allgather(out, tiled=True)
        return out[:len(batch["input_ids"])]

    def trace(self, batch: dict[str, np.ndarray]) -> jax.stages.Traced:
        """The traced computation for `batch`'s shape (`.jaxpr`, `.lower()`), for inspection."""
        return self._forward.trace(self._state, *self._inputs(batch))

    def _inputs(self, batch: dict[str, np.ndarray]) -> list[jax.Array]:
        rows = len(batch["input_ids"])
        if is_distributed():  # each process cuts its rows from its own copy of the batch
            check_same(digest(np.asarray(batch[key]) for key in INPUT_KEYS), "the batch")
        padded = -(-rows // self.num_shards) * self.num_shards
        inputs = []
        for key in INPUT_KEYS:
            value = np.asarray(batch[key])
            if padded != rows:  # all-padding rows (ids 0, attention_mask 0), dropped in __call__
                value = np.concatenate([value, np.zeros((padded - rows, *value.shape[1:]), value.dtype)])
            inputs.append(_global_array(value, self._rows))
        return inputs

    def __repr__(self) -> str:
        return f"ShardedForward(axis={self.axis!r}, num_shards={self.num_shards}, mesh={self.mesh.shape})"


def split_rows(per_shard, mesh: Mesh, *, axis: str = "data"):
    """`per_shard(state, input_ids, attention_mask, token_type_ids)` run data parallel: a
    `jax.shard_map` over `mesh` whose state is replicated and whose three `[rows, seq]` inputs
    and outputs (every leaf) are split by rows along `axis`. Every device runs `per_shard` on
    its own rows, so each `pallas_call` inside sees one device's shard, as Pallas needs.

    The row count must be a multiple of `mesh.shape[axis]`.
    """
    # check_vma=False: under the check, jax 0.11 needs every pallas_call's out_shape to say
    # how it varies over mesh axes (`ShapeDtypeStruct(manual_axis_type=...)`), which the
    # kernels do not. The check has little to guard here: the body has no collectives, and
    # out_specs P(axis) concatenates the per-device rows rather than claiming replication.
    return jax.shard_map(per_shard, mesh=mesh, in_specs=(P(), P(axis), P(axis), P(axis)),
                         out_specs=P(axis), check_vma=False)


def local_devices(devices) -> tuple[jax.Device, ...]:
    """`devices` checked as devices this process can place rows on: a non-empty sequence of
    distinct `jax.Device`s of this process and of one platform.

    Raises:
      TypeError: `devices` is not a sequence of `jax.Device`.
      ValueError: empty, a device twice, another process's device, or mixed platforms.
    """
    if isinstance(devices, (str, bytes, jax.Device)) or not isinstance(devices, Sequence):
        raise TypeError(f"devices must be a sequence of jax.Device, e.g. jax.local_devices(); "
                        f"got {devices!r}")
    devices = tuple(devices)
    if not devices:
        raise ValueError("devices is empty; give at least one, e.g. jax.local_devices()")
    for device in devices:
        if not isinstance(device, jax.Device):
            raise TypeError(f"devices holds {device!r}, a {type(device).__name__}, not a "
                            "jax.Device; e.g. jax.local_devices()")
    if len(set(devices)) != len(devices):
        raise ValueError(f"devices names a device twice: {list(devices)}")
    others = [d for d in devices if d.process_index != jax.process_index()]
    if others:
        raise ValueError(f"devices {others} belong to another process (this is process "
                         f"{jax.process_index()}); give this process's own: jax.local_devices()")
    platforms = sorted({d.platform for d in devices})
    if len(platforms) > 1:
        raise ValueError(f"devices mixes platforms {platforms}; give devices of one platform")
    return devices


def sharded_forward(model: nnx.Module, mesh: Mesh, *, axis: str = "data") -> ShardedForward:
    """Splits `model` once and returns a data-parallel `batch -> np.ndarray` function.

    One compilation per distinct input shape, like `jit_forward`. The weights are replicated on
    every device of `mesh`; the rows of each batch are split along `axis`.

    Args:
      model: an `EncoderModel` or `QuantizedModel` (any `model(ids, mask, types)` module).
      mesh: e.g. `data_mesh()`.
      axis: the mesh axis to split rows over.

    Raises:
      ValueError: `axis` is not an axis of `mesh`.
    """
    return ShardedForward(model, mesh, axis=axis)


def as_sharded(forward, mesh: Mesh) -> ShardedForward:
    """The `ShardedForward` for `mesh` from a model or from a `sharded_forward` (reused).

    What `predict` / `evaluate` / `run_batched` do with their `mesh` argument.
    """
    if isinstance(forward, ShardedForward):
        if forward.mesh != mesh:
            raise ValueError(f"forward was built for mesh {forward.mesh.shape}, not for {mesh.shape}")
        return forward
    if isinstance(forward, nnx.Module):
        return sharded_forward(forward, mesh)
    raise TypeError("with a mesh, pass the model or a sharded_forward(model, mesh), not "
                    f"{type(forward).__name__} (a jit_forward would run on one device)")


def round_batch_size(batch_size: int, num_shards: int) -> int:
    """`batch_size` rounded up to a multiple of `num_shards` (equal rows on every device)."""
    if batch_size < 1:
        raise ValueError(f"{batch_size=} must be positive")
    return -(-batch_size // num_shards) * num_shards


def _global_array(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host value that every process holds in full: each process copies
    only the blocks its own devices hold."""
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
