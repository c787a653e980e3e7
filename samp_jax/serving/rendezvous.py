"""The pre-flight and the watchdog of a distributed run, in plain Python sockets.

JAX's coordination service ends a process with SIGABRT and a C++ stack (or a segfault) when
the processes do not all register in time, when the port is taken, or when a peer dies; it
takes no Python callback in jax 0.11. So before `jax.distributed.initialize`:

- process 0 listens on the coordinator's `HOST:PORT` itself (which tests the port: in use, or
  HOST not an address of this machine), and only on that address;
- the others poll that address until the connect timeout, then say who they are;
- process 0 checks that every id in `1..N-1` came once and that all agree on N, and answers
  every process with "go" or with the one error, so that all of them stop with the same line.

Then process 0 closes its listener (JAX's service binds the same port next) and the
connections stay open as the run's watchdog: a peer that dies closes its connection (the
survivors stop at once), and a peer that goes silent (its host lost) is given up after
`stale_after_s` without a ping. The watchdog's `on_failure` prints our one line and ends the
process before JAX's own heartbeat timeout (set longer) would abort it.

Messages are JSON lines: `{"hello": MAGIC, "process_id", "num_processes"}` (to process 0),
`{"go": true}` or `{"error": "..."}` (its answer), then `{"ping": 1}` every second both ways,
`{"bye": true}` at a normal end and `{"abort": "..."}` from process 0 when another peer died.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from samp_jax.core.errors import SampJaxError

MAGIC = "samp-jax-rendezvous/1"
PING_EVERY_S = 1.0
# Before a closed connection counts as a dead peer: lets this process's own error, raised by
# the same collective that made the peer stop, be the one line it prints.
GRACE_S = 2.0
PROBE_S = 2.0  # how long a non-samp-jax listener gets to answer a hello


class JoinError(SampJaxError, RuntimeError):
    """The processes of a distributed run could not all meet; the message is one line."""


@dataclass
class _Link:
    """This process's connection to one other process of the run."""
    process_id: int
    sock: socket.socket
    reader: object = None
    said_bye: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.reader = self.sock.makefile("rb")

    def send(self, message: dict) -> bool:
        try:
            with self.lock:
                self.sock.sendall(json.dumps(message).encode() + b"\n")
            return True
        except OSError:
            return False

    def receive(self, timeout_s: float | None) -> dict | None:
        """The next message; None on a closed connection or a line that is not ours.

        Raises:
          TimeoutError: nothing came within `timeout_s`.
        """
        self.sock.settimeout(timeout_s)
        try:
            line = self.reader.readline(65536)
        except (TimeoutError, socket.timeout):
            raise TimeoutError from None
        except (OSError, ValueError):
            return None
        try:
            message = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return None
        return message if isinstance(message, dict) else None

    def close(self) -> None:
        for thing in (self.reader, self.sock):
            try:
                thing.close()
            except OSError:
                pass


def split_address(address: str) -> tuple[str, int]:
    """(`host`, `port`) of `HOST:PORT` (an IPv6 host in brackets loses them)."""
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback address (127.0.0.0/8, ::1)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback
                               for info in infos)


def meet(address: str, num_processes: int, process_id: int, timeout_s: float) -> list[_Link]:
    """Meets every process of the run at `address` (process 0's `HOST:PORT`).

    Returns the open connections (process 0: one per other process; the others: one, to
    process 0), for a `Watchdog`.

    Raises:
      JoinError: the port cannot be listened on, no process 0 answered, a process did not come
        within `timeout_s`, an id came twice, or the processes disagree on `num_processes`.
    """
    deadline = time.monotonic() + timeout_s
    if process_id == 0:
        return _lead(address, num_processes, timeout_s, deadline)
    return [_follow(address, num_processes, process_id, timeout_s, deadline)]


def _hello(num_processes: int, process_id: int) -> dict:
    return {"hello": MAGIC, "process_id": process_id, "num_processes": num_processes}


def _listen(address: str, num_processes: int) -> socket.socket:
    host, port = split_address(address)
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
    except OSError as e:
        raise JoinError(f"cannot listen on {address}: {e.strerror or e}") from None
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(where)
        listener.listen(max(num_processes, 8))
    except OSError as e:
        listener.close()
        if _answers_as_samp_jax(address, num_processes):
            raise JoinError(f"--process-id 0 is given to two processes: another process 0 "
                            f"already listens on {address}") from None
        if e.errno == errno.EADDRINUSE:
            raise JoinError(f"the port of {address} is in use (another program, or a run "
                            "already under way); choose another port") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise JoinError(f"{host} is not an address of this machine, so process 0 cannot "
                            "listen on it; start process 0 on that host") from None
        raise JoinError(f"cannot listen on {address}: {e.strerror or e}") from None
    return listener


def _answers_as_samp_jax(address: str, num_processes: int) -> bool:
    """Whether a samp-jax process 0 listens at `address` (it then sees a second process 0)."""
    try:
        sock = socket.create_connection(split_address(address), timeout=PROBE_S)
    except OSError:
        return False
    link = _Link(0, sock)
    try:
        link.send(_hello(num_processes, 0))
        return link.receive(PROBE_S) is not None
    except TimeoutError:
        return False
    finally:
        link.close()


def _lead(address: str, num_processes: int, timeout_s: float, deadline: float) -> list[_Link]:
    """Process 0: accepts every other process once, then answers all of them."""
    listener = _listen(address, num_processes)
    links: dict[int, _Link] = {}
    try:
        listener.settimeout(0.2)
        while len(links) < num_processes - 1:
            if time.monotonic() > deadline:
                missing = sorted(set(range(1, num_processes)) - set(links))
                _refuse(links.values(), f"process(es) {missing} of {num_processes} did not join "
                        f"within {timeout_s:g} s (the connect timeout)")
            try:
                sock, _ = listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            link = _Link(-1, sock)
            error = _admit(link, links, num_processes, deadline)
            if error:
                link.send({"error": error})
                link.close()
                _refuse(links.values(), error)
        gone = [link.process_id for link in links.values() if _closed(link.sock)]
        if gone:
            _refuse(links.values(), f"process(es) {gone} left before the run started")
        for link in links.values():
            link.send({"go": True})
        return list(links.values())
    finally:
        listener.close()


def _admit(link: _Link, links: dict[int, _Link], num_processes: int, deadline: float) -> str | None:
    """Reads a newcomer's hello and files it in `links`; returns an error that ends the run,
    or None (a connection that is not a samp-jax process is dropped, and None returned)."""
    try:
        hello = link.receive(max(0.5, min(PROBE_S, deadline - time.monotonic())))
    except TimeoutError:
        hello = None
    if not hello or hello.get("hello") != MAGIC:
        link.close()
        return None
    given, count = hello.get("process_id"), hello.get("num_processes")
    if count != num_processes:
        return (f"the processes disagree on --num-processes: process {given} was given "
                f"{count}, process 0 was given {num_processes}")
    if given == 0 or given in links:
        return f"--process-id {given} is given to two processes"
    if not isinstance(given, int) or not 0 < given < num_processes:
        return f"process id {given!r} is not in 1..{num_processes - 1}"
    link.process_id = given
    links[given] = link
    return None


def _refuse(links, error: str):
    for link in links:
        link.send({"error": error})
        link.close()
    raise JoinError(error)


def _closed(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _follow(address: str, num_processes: int, process_id: int, timeout_s: float,
            deadline: float) -> _Link:
    """Processes 1..N-1: polls process 0 until the deadline, says hello, waits for the answer."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise JoinError(f"no process 0 answered at {address} within {timeout_s:g} s "
                            "(the connect timeout); is it started, with the same address?")
        try:
            sock = socket.create_connection(split_address(address), timeout=min(PROBE_S, remaining))
            break
        except OSError:
            time.sleep(min(0.25, max(remaining, 0)))
    link = _Link(0, sock)
    link.send(_hello(num_processes, process_id))
    try:
        answer = link.receive(max(deadline - time.monotonic(), PROBE_S))
    except TimeoutError:
        link.close()
        raise JoinError(f"{address} accepted the connection but gave no samp-jax answer within "
                        f"{timeout_s:g} s (the connect timeout): process 0 waiting for a process "
                        "that did not join, or another program holding that port") from None
    if answer is None:
        link.close()
        raise JoinError(f"{address} does not answer as a samp-jax process 0 (another program "
                        "on that port, or a run already under way)")
    if "error" in answer:
        link.close()
        raise JoinError(str(answer["error"]))
    return link


class Watchdog:
    """Watches the other processes over the connections `meet` returned.

    A connection that closes without a "bye", or that sends nothing for `stale_after_s`, calls
    `on_failure(message)` once (which is expected not to return: it ends the process).
    """

    def __init__(self, links: list[_Link], process_id: int, stale_after_s: float,
                 on_failure: Callable[[str], None]):
        self.links, self.process_id = links, process_id
        self.stale_after_s, self.on_failure = stale_after_s, on_failure
        self._stopping = threading.Event()
        self._failed = threading.Lock()
        self._threads = [threading.Thread(target=self._watch, args=(link,), daemon=True,
                                          name=f"samp-jax-watch-{link.process_id}")
                         for link in links]
        self._threads.append(threading.Thread(target=self._ping, daemon=True,
                                              name="samp-jax-ping"))

    def start(self) -> Watchdog:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """A normal end: tells the others so that they do not take this process for dead."""
        self._stopping.set()
        for link in self.links:
            link.send({"bye": True})

    def fail(self, message: str) -> None:
        """Reports `message` once (later calls wait for the first to end the process)."""
        self._failed.acquire()
        if self.process_id == 0:  # the others hear the reason from process 0
            for link in self.links:
                link.send({"abort": message})
        self.on_failure(message)

    def silence(self) -> None:
        """Keeps the watchdog from reporting: this process reports its own error and ends."""
        self._failed.acquire(timeout=2 * GRACE_S)

    def _ping(self) -> None:
        while not self._stopping.wait(PING_EVERY_S):
            for link in self.links:
                link.send({"ping": 1})

    def _watch(self, link: _Link) -> None:
        while True:
            try:  # after its "bye" a process sends no pings: only a closed connection counts
                message = link.receive(None if link.said_bye else self.stale_after_s)
            except TimeoutError:
                self.fail(f"another process of this distributed run went silent: no word from "
                          f"process {link.process_id} for {self.stale_after_s:g} s (the heartbeat "
                          "timeout); its host or network may be down")
                return
            if message is None:
                if link.said_bye:
                    return
                time.sleep(GRACE_S)
                self.fail(f"another process of this distributed run stopped: process "
                          f"{link.process_id} closed its connection (see its log)")
                return
            if message.get("bye"):
                link.said_bye = True
            elif "abort" in message:
                self.fail(str(message["abort"]))
                return
