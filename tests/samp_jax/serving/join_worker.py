"""One process that joins a distributed run and waits (run by test_distributed.py):

    python join_worker.py PORT NUM_PROCESSES PROCESS_ID CONNECT_TIMEOUT_S STAY_S [HEARTBEAT_S]

On joining it prints `{"process", "devices", "listening"}` as JSON, `listening` being every
address listening on PORT on this machine (from /proc/net/tcp and tcp6), then stays STAY_S
seconds. A failure to join is one line on stderr and exit status 1.
"""

import json
import socket
import sys
import time

import samp_jax as sj


def listening_on(port: int) -> list[str]:
    """The local addresses of the TCP sockets listening on `port` (state 0A in /proc/net)."""
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state != "0A" or int(hex_port, 16) != port:
                    continue
                raw = bytes.fromhex(address)  # little-endian 32-bit words
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.append(socket.inet_ntop(family, raw))
    return found


port, processes, process_id, timeout_s, stay_s, *heartbeat_s = sys.argv[1:]
try:
    sj.initialize_distributed(f"127.0.0.1:{port}", num_processes=int(processes),
                              process_id=int(process_id), timeout_s=int(timeout_s),
                              heartbeat_timeout_s=int(heartbeat_s[0]) if heartbeat_s else 10)
except RuntimeError as e:
    print(f"join_worker: error: {e}", file=sys.stderr)
    sys.exit(1)

import jax  # noqa: E402  (after joining the run)

print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(),
                  "listening": listening_on(int(port))}), flush=True)
time.sleep(float(stay_s))
