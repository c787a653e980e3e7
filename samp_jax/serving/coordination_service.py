"""JAX's coordination service in a process of its own, started by process 0 of a run.

`jax.distributed.initialize` runs the service inside process 0; if process 0 dies, every other
process loses the service's connection and jaxlib aborts it at once (SIGABRT, a C++ stack),
before any Python code of ours can run. Hosted here instead, the service outlives process 0
long enough (`LINGER_S`) for the others' watchdog to stop them with one line.

Started by `start()` as `python -P coordination_service.py HOST:PORT NUM_PROCESSES HEARTBEAT_S`
(this file alone: it imports jaxlib, not samp_jax, so it is up in well under a second). It
prints "ready" once it listens on HOST:PORT, and ends when its standard input closes (process 0
ended): at once after a "done" line (a normal end), after `LINGER_S` otherwise. It ignores
Ctrl-C, which reaches every process of a terminal's job: process 0 ends, this one lingers.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

LINGER_S = 10.0  # the others' watchdog stops them within about 2 s of process 0's death
AFTER_DONE_S = 1.0  # lets the others finish JAX's shutdown barrier after a normal end


def start(address: str, num_processes: int, heartbeat_timeout_s: int,
          timeout_s: float) -> subprocess.Popen:
    """Starts the service on `address`; returns it once it listens.

    Raises:
      RuntimeError: it could not listen on `address` (one line), or did not say so within
        `timeout_s`.
    """
    service = subprocess.Popen(
        [sys.executable, "-P", os.path.abspath(__file__), address, str(num_processes),
         str(heartbeat_timeout_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    readable, _, _ = select.select([service.stdout], [], [], timeout_s)
    line = service.stdout.readline().strip() if readable else None
    if line != "ready":
        service.kill()
        code = service.wait()
        why = (f"no answer within {timeout_s:g} s" if line is None
               else line or f"it stopped with exit status {code}")
        raise RuntimeError(f"JAX's coordination service could not listen on {address} ({why})")
    return service


def finish(service: subprocess.Popen) -> None:
    """A normal end of process 0: the service ends as soon as process 0 has gone."""
    try:
        service.stdin.write("done\n")
        service.stdin.flush()
    except (OSError, ValueError):
        pass


def _serve(address: str, num_processes: int, heartbeat_timeout_s: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from jaxlib import _jax  # noqa: PLC0415  (this file runs alone, as a script)
        service = _jax.get_distributed_runtime_service(  # noqa: F841  (kept alive)
            address, num_processes, heartbeat_timeout=heartbeat_timeout_s,
            shutdown_timeout=heartbeat_timeout_s)
    except Exception as e:  # noqa: BLE001  one line back to process 0
        print(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
        os._exit(1)
    print("ready", flush=True)
    done = False
    for line in sys.stdin:
        done = done or line.strip() == "done"
    time.sleep(AFTER_DONE_S if done else LINGER_S)
    os._exit(0)  # without the service's own shutdown wait


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
