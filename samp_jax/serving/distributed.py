"""Several processes (one per host, or several on one machine) running one job together.

JAX's multi-controller model: every process runs the same program; `jax.distributed` connects
them through a coordinator (process 0's address), after which `jax.devices()` lists every
process's devices and a `data_mesh()` spans them all. samp-jax uses it two ways:

- **evaluation** (`evaluate`, `samp-jax eval`): each batch is one global array split over
  every device of every process (`sharding.sharded_forward`); a process copies only its own
  devices' rows to them and the outputs are gathered to every process, so each can score.
- **prediction** (`samp-jax predict`): each process predicts its own contiguous block of the
  rows (`process_rows`) on its own devices, and process 0 gathers the records
  (`gather_bytes`) and writes the one output file.

Every process must read the same model and the same data: `check_same` compares a digest of
them across processes and raises `DistributedMismatchError` instead of computing from
mismatched copies.

    samp_jax.initialize_distributed("10.0.0.1:7777", num_processes=2, process_id=0)  # host 0
    samp_jax.initialize_distributed("10.0.0.1:7777", num_processes=2, process_id=1)  # host 1
    samp_jax.evaluate(model, task, tokenizer=tok)   # same call on both; same result on both

On CPU the processes exchange data with gloo (`jax_cpu_collectives_implementation`), which
`initialize_distributed` selects; GPUs use NCCL. A process that dies makes the others fail:
a collective in flight fails at once (its connection drops), and otherwise the coordinator
stops the others once the dead process misses heartbeats for `heartbeat_timeout_s`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Iterable

import jax
import numpy as np
from jax.experimental import multihost_utils

AUTO = "auto"
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
# Errors of a collective whose peer has gone (gloo, NCCL, the coordination service).
_PEER_FAILURE = re.compile(r"gloo|connection reset|connection refused|heartbeat|unavailable|"
                           r"barrier|peer|socket closed|nccl", re.IGNORECASE)


class DistributedMismatchError(RuntimeError):
    """Processes of one distributed run hold different copies of what must be the same."""


def initialize_distributed(coordinator: str = AUTO, num_processes: int | None = None,
                           process_id: int | None = None, *, local_device_ids=None,
                           timeout_s: int = 300, heartbeat_timeout_s: int = 100) -> None:
    """Joins this process to a distributed run; call it before any other JAX call.

    Args:
      coordinator: process 0's `HOST:PORT` (every process gives the same), or "auto" to take
        the run's layout from the cluster environment (SLURM, Open MPI, Kubernetes, Cloud TPU)
        as `jax.distributed.initialize()` detects it.
      num_processes: how many processes take part (required with an address).
      process_id: this process's index in `[0, num_processes)` (required with an address).
      local_device_ids: the local devices this process uses (default: all).
      timeout_s: how long to wait for every process to connect.
      heartbeat_timeout_s: how long a silent process may go before the others are stopped.

    Raises:
      ValueError: a malformed address, counts or timeouts.
      RuntimeError: JAX already ran a computation in this process, or the run is already
        initialized, or the processes did not all connect within `timeout_s`.
    """
    options = {"initialization_timeout": _positive("timeout_s", timeout_s),
               "heartbeat_timeout_seconds": _positive("heartbeat_timeout_s", heartbeat_timeout_s),
               "local_device_ids": local_device_ids}
    if coordinator != AUTO:
        if not isinstance(coordinator, str) or not _ADDRESS.match(coordinator):
            raise ValueError(f"coordinator={coordinator!r} is not HOST:PORT (e.g. 10.0.0.1:7777) "
                             f"or {AUTO!r}")
        if not 0 < int(coordinator.rsplit(":", 1)[1]) < 65536:
            raise ValueError(f"coordinator={coordinator!r}: the port must be in 1..65535")
        if num_processes is None or process_id is None:
            raise ValueError(f"coordinator={coordinator!r} needs num_processes and process_id")
        if not isinstance(num_processes, int) or num_processes < 1:
            raise ValueError(f"num_processes={num_processes!r} must be a positive integer")
        if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
            raise ValueError(f"process_id={process_id!r} must be in [0, {num_processes})")
        options |= {"coordinator_address": coordinator, "num_processes": num_processes,
                    "process_id": process_id}
    if jax.distributed.is_initialized():
        raise RuntimeError("jax.distributed is already initialized in this process")
    # CPU devices of different processes talk over gloo (the default, none, cannot); GPUs
    # ignore this setting and use NCCL.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**options)
    except (RuntimeError, ValueError) as e:  # the message of jaxlib's status, one line
        raise RuntimeError(f"could not join the distributed run at {coordinator}: "
                           f"{_first_line(e)}") from None


def is_distributed() -> bool:
    """Whether this process is one of several (after `initialize_distributed`)."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def is_primary() -> bool:
    """True on process 0, which writes a run's outputs (always True in a single process)."""
    return jax.process_index() == 0


def process_rows(count: int) -> slice:
    """This process's contiguous block of `count` rows; the blocks of all processes, in
    process order, cover `range(count)` once. Sizes differ by at most one row."""
    processes, index = jax.process_count(), jax.process_index()
    base, extra = divmod(count, processes)
    start = index * base + min(index, extra)
    return slice(start, start + base + (index < extra))


def digest(parts: Iterable) -> bytes:
    """A sha256 of byte strings, strings and numpy arrays (dtype and shape included)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, str):
            part = part.encode()
        elif not isinstance(part, bytes):
            array = np.ascontiguousarray(part)
            h.update(f"{array.dtype}{array.shape}".encode())
            part = array.tobytes()
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def state_digest(module) -> bytes:
    """A `digest` of every array of an NNX module's state (its weights, scales and buffers)."""
    from flax import nnx  # here, not at the top: the module stays light to import
    return digest(np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(module)))


def check_same(value: bytes, what: str) -> None:
    """Raises `DistributedMismatchError` unless every process passes the same `value` (e.g. a
    `digest`); a no-op in a single process. Every process must call it at the same point."""
    if not is_distributed():
        return
    values = gather_bytes(value)
    differing = [i for i, v in enumerate(values) if v != values[0]]
    if differing:
        raise DistributedMismatchError(
            f"{what} differs between processes: process(es) {differing} do not match process 0. "
            "Every process must be given the same model, data and options")


def gather_bytes(data: bytes) -> list[bytes]:
    """Every process's `data`, in process order, on every process (a collective: all call it)."""
    if not is_distributed():
        return [data]
    sizes = np.asarray(multihost_utils.process_allgather(np.array([len(data)], np.int64)))
    sizes = sizes.reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:len(data)] = np.frombuffer(data, np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    return [gathered[i, :size].tobytes() for i, size in enumerate(sizes)]


def describe_failure(error: BaseException) -> str | None:
    """A one-line explanation when `error` looks like another process of the run failing, or
    None (not distributed, or an ordinary error)."""
    if not jax.distributed.is_initialized():
        return None
    text = str(error)
    if type(error).__name__ != "JaxRuntimeError" or not _PEER_FAILURE.search(text):
        return None
    return ("another process of this distributed run stopped or failed (see its log); "
            f"this process cannot go on: {_first_line(error)}")


def _positive(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive whole number of seconds")
    return value


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__
