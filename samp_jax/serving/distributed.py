"""Several processes (one per host, or several on one machine) running one job together.

JAX's multi-controller model: every process runs the same program; `jax.distributed` connects
them through a coordinator (process 0's address), after which `jax.devices()` lists every
process's devices and a `data_mesh()` spans them all. samp-jax uses it two ways:

- **evaluation** (`evaluate`, `samp-jax eval`): each batch is one global array split over
  every device of every process (`sharding.sharded_forward`); a process copies only its own
  devices' rows to them and the outputs are gathered to every process, so each can score.
- **prediction** (`samp-jax predict`): each process predicts its own contiguous block of the
  rows (`process_rows`), split over its own devices (`compile(devices=jax.local_devices())`),
  and process 0 gathers the records
  (`gather_bytes`) and writes the one output file.

Every process must read the same model and the same data, and be given the same options:
`check_same_options` compares the options when the processes join and `check_same` a digest
of the model and data when read; each raises `DistributedMismatchError` instead of computing
from mismatched copies.

    samp_jax.initialize_distributed("10.0.0.1:7777", num_processes=2, process_id=0,
                                    allow_remote=True)  # host 0 (and process_id=1 on host 1)
    samp_jax.evaluate(model, task, tokenizer=tok)   # same call on both; same result on both

On CPU the processes exchange data with gloo (`jax_cpu_collectives_implementation`), which
`initialize_distributed` selects; GPUs use NCCL.

Failures end in one line and exit 1, never JAX's SIGABRT: before `jax.distributed.initialize`
the processes meet over plain sockets at the coordinator's address (`rendezvous.meet`: the port
tested, every id checked once, all within `timeout_s`), and those connections stay open as a
watchdog (`rendezvous.Watchdog`) that stops the survivors of a dead or silent peer before JAX's
own heartbeat timeout (set longer) would abort them. JAX's coordination service runs in a
process of its own (`coordination_service`), so that process 0's death does not make jaxlib
abort the others first. A collective in flight when a peer dies fails at once (its connection
drops); `describe_failure` words that error.

The coordinator (process 0) listens only on the address it is given, for the pre-flight and for
JAX's coordination service alike. That service has no authentication: anyone who can reach the
address can join or disturb the run, so an address that is not loopback needs
`allow_remote=True`. With "auto" JAX listens on every interface (it cannot be narrowed before
the address is known), so "auto" needs `allow_remote=True` too.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import sys
import threading
from typing import Callable, Iterable

import jax
import numpy as np
from jax._src import distributed as jax_distributed_state
from jax.experimental import multihost_utils

from samp_jax.core.errors import SampJaxError
from samp_jax.serving import coordination_service
from samp_jax.serving.rendezvous import JoinError, Watchdog, is_loopback, meet, split_address

AUTO = "auto"
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
# Errors of a collective whose peer has gone (gloo, NCCL, the coordination service).
_XLA_STATUS = re.compile(r"(UNKNOWN|INTERNAL|UNAVAILABLE|ABORTED|CANCELLED|DEADLINE_EXCEEDED|"
                         r"FAILED_PRECONDITION|DATA_LOSS): ")
_PEER_FAILURE = re.compile(r"gloo|connection reset|connection refused|heartbeat|unavailable|"
                           r"barrier|peer|socket closed|nccl", re.IGNORECASE)
# JAX's own timeouts are set past ours, so that our one line comes first.
_JAX_MARGIN_S = 10
_watchdog: Watchdog | None = None


class DistributedMismatchError(SampJaxError, RuntimeError):
    """Processes of one distributed run hold different copies of what must be the same."""


def initialize_distributed(coordinator: str = AUTO, num_processes: int | None = None,
                           process_id: int | None = None, *, local_device_ids=None,
                           timeout_s: int = 300, heartbeat_timeout_s: int = 60,
                           allow_remote: bool = False,
                           on_failure: Callable[[str], None] | None = None) -> None:
    """Joins this process to a distributed run; call it before any other JAX call.

    Args:
      coordinator: process 0's `HOST:PORT` (every process gives the same), or "auto" to take
        the run's layout from the cluster environment (SLURM, Open MPI, Kubernetes, Cloud TPU)
        as `jax.distributed.initialize()` detects it. Process 0 listens on HOST only.
      num_processes: how many processes take part (required with an address).
      process_id: this process's index in `[0, num_processes)` (required with an address).
      local_device_ids: the local devices this process uses (default: all).
      timeout_s: how long to wait for every process to connect.
      heartbeat_timeout_s: how long a silent process may go before the others are stopped
        (the command line's `--heartbeat-timeout` default, 60 s).
      allow_remote: allow a coordinator that is not a loopback address, or "auto": JAX's
        coordination service has no authentication, so only on a network you trust.
      on_failure: called with a one-line message when another process of the run dies or goes
        silent; it should end the process. Default: print it on stderr and exit with status 1.

    Raises:
      ValueError: a malformed address, counts or timeouts, or a remote coordinator without
        `allow_remote`.
      RuntimeError: JAX already ran a computation in this process, or the run is already
        initialized, or the processes did not all connect within `timeout_s` (one line:
        "could not join the distributed run at ...").
    """
    options = _jax_options(coordinator, num_processes, process_id, local_device_ids, timeout_s,
                           heartbeat_timeout_s)
    _check_reach(coordinator, allow_remote)
    if jax.distributed.is_initialized():
        raise RuntimeError("jax.distributed is already initialized in this process")
    # CPU devices of different processes talk over gloo (the default, none, cannot); GPUs
    # ignore this setting and use NCCL.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator == AUTO:  # JAX's own timeouts: there is no watchdog to come first
        options |= {"initialization_timeout": timeout_s,
                    "heartbeat_timeout_seconds": heartbeat_timeout_s}
        _initialize_jax(coordinator, options, None, timeout_s)
        return
    watchdog = _meet(coordinator, num_processes, process_id, timeout_s, heartbeat_timeout_s,
                     on_failure or _report_and_exit)
    service = None
    if process_id == 0:  # the service in a process of its own; this one's is a decoy
        service = _start_service(coordinator, num_processes, options, timeout_s, watchdog)
    _initialize_jax(coordinator, options, watchdog, timeout_s)
    if service is not None:
        _stop_decoy_service()
    atexit.register(_finish, watchdog, service)  # runs before JAX's shutdown (registered earlier)


def _jax_options(coordinator, num_processes, process_id, local_device_ids, timeout_s: int,
                 heartbeat_timeout_s: int) -> dict:
    """`jax.distributed.initialize`'s arguments, after checking the timeouts and (for an
    address) the layout; JAX's timeouts run `_JAX_MARGIN_S` past ours."""
    options = {"initialization_timeout": _positive("timeout_s", timeout_s) + _JAX_MARGIN_S,
               "heartbeat_timeout_seconds":
                   2 * _positive("heartbeat_timeout_s", heartbeat_timeout_s) + _JAX_MARGIN_S,
               "local_device_ids": local_device_ids}
    if coordinator != AUTO:
        _check_layout(coordinator, num_processes, process_id)
        options |= {"coordinator_address": coordinator, "num_processes": num_processes,
                    "process_id": process_id}
    return options


def _start_service(coordinator: str, num_processes: int, options: dict, timeout_s: int,
                   watchdog: Watchdog):
    """Process 0: starts JAX's coordination service in a process of its own and points this
    process's own (decoy) service at an unused loopback port in `options`."""
    try:
        service = coordination_service.start(coordinator, num_processes,
                                             options["heartbeat_timeout_seconds"], timeout_s)
    except RuntimeError as e:
        watchdog.silence()
        raise RuntimeError(f"could not join the distributed run at {coordinator}: "
                           f"{e}") from None
    host, _ = split_address(coordinator)
    options["coordinator_bind_address"] = "[::1]:0" if ":" in host else "127.0.0.1:0"
    return service


def _check_layout(coordinator, num_processes, process_id) -> None:
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


def _check_reach(coordinator: str, allow_remote: bool) -> None:
    """Refuses a coordinator reachable from other machines unless `allow_remote`."""
    if allow_remote:
        return
    if coordinator == AUTO:
        raise ValueError(f"coordinator={AUTO!r} makes JAX's coordination service listen on every "
                         "interface, and it has no authentication: pass allow_remote=True to "
                         "accept that (on a network you trust)")
    host, _ = split_address(coordinator)
    if not is_loopback(host):
        raise ValueError(f"coordinator={coordinator!r} is not a loopback address: JAX's "
                         "coordination service has no authentication, so any machine that "
                         "reaches it can join or disturb the run; pass allow_remote=True on a "
                         "network you trust")


def _meet(coordinator, num_processes, process_id, timeout_s, heartbeat_timeout_s,
          on_failure) -> Watchdog:
    try:
        links = meet(coordinator, num_processes, process_id, timeout_s)
    except JoinError as e:
        raise RuntimeError(f"could not join the distributed run at {coordinator}: {e}") from None
    return Watchdog(links, process_id, heartbeat_timeout_s, on_failure).start()


def _initialize_jax(coordinator: str, options: dict, watchdog: Watchdog | None,
                    timeout_s: int) -> None:
    """`jax.distributed.initialize`, stopped by the watchdog if it outlasts `timeout_s`."""
    global _watchdog
    timer = None
    if watchdog is not None:
        timer = threading.Timer(timeout_s, watchdog.fail, [
            f"could not join the distributed run at {coordinator}: JAX's coordination service "
            f"did not connect every process within {timeout_s} s"])
        timer.daemon = True
        timer.start()
    try:
        jax.distributed.initialize(**options)
    except (RuntimeError, ValueError) as e:  # the message of jaxlib's status, one line
        if watchdog is not None:
            watchdog.silence()
        raise RuntimeError(f"could not join the distributed run at {coordinator}: "
                           f"{_first_line(e)}") from None
    finally:
        if timer is not None:
            timer.cancel()
    _watchdog = watchdog


def _stop_decoy_service() -> None:
    """Shuts down the service `jax.distributed.initialize` started in process 0 on an unused
    loopback port (the real one runs in `coordination_service`). jax keeps it in a private
    attribute: if that moves, the idle decoy merely stays."""
    state = getattr(jax_distributed_state, "global_state", None)
    if getattr(state, "service", None) is not None:
        state.service.shutdown()
        state.service = None


def _finish(watchdog: Watchdog, service) -> None:
    """A normal end: the others hear "bye", the coordination service that it may go."""
    watchdog.stop()
    if service is not None:
        coordination_service.finish(service)


def silence_watchdog() -> None:
    """Call before reporting this process's own error: the watchdog then stays quiet, so the
    process prints one line (its own) even when a peer stops at the same moment."""
    if _watchdog is not None:
        _watchdog.silence()


def _report_and_exit(message: str) -> None:
    """The default `on_failure`: one line on stderr, exit status 1, no JAX shutdown barrier."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(f"samp_jax: error: {message}", file=sys.stderr, flush=True)
    os._exit(1)


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


def check_same_options(options: dict) -> None:
    """Raises `DistributedMismatchError` naming the first option whose value differs between
    processes (process 0's value and the other's), unless every process passes the same
    `options` (JSON-serializable; `repr` where not); a no-op in a single process. Every
    process must call it at the same point: before any slow work, so a run given different
    options ends at once rather than computing a mix."""
    if not is_distributed():
        return
    encoded = json.dumps(options, sort_keys=True, default=repr).encode()
    everyone = [json.loads(b) for b in gather_bytes(encoded)]
    for index, theirs in enumerate(everyone[1:], start=1):
        for name in sorted(set(everyone[0]) | set(theirs)):
            if everyone[0].get(name) != theirs.get(name):
                raise DistributedMismatchError(
                    f"{name} differs between processes: process {index} has "
                    f"{theirs.get(name)!r}, process 0 has {everyone[0].get(name)!r}. Every "
                    "process must be given the same model, data and options")


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
    # a runtime error of XLA's: JaxRuntimeError, or one JAX re-raises as another type (a
    # collective in `process_allgather` fails as a ValueError) with XLA's status first
    from_xla = type(error).__name__ == "JaxRuntimeError" or _XLA_STATUS.match(text)
    if not from_xla or not _PEER_FAILURE.search(text):
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
