"""The child process of the kill -9 test: forks savers that the parent kills.

    python -m tests.faults.save_child SOURCE SCRATCH PAUSE

Loads the quantized model in SOURCE once and saves it through a slow disk: the weights are
written in `CHUNKS` pieces, `PAUSE` seconds apart, and every rename and delete waits `PAUSE`
before and after, so that a kill lands anywhere in a save, the window between the two renames
included. The hooks live here, in the test; the library has none.

It times a save that replaces SCRATCH and prints `ready <seconds>`. Then, for each folder the parent
writes on stdin, it forks a saver that saves the model over that folder again and again
(printing `saved` after each save), prints `pid <pid>`, waits for the parent to kill it and
prints `reaped <signal>`. Forking keeps
a kill point cheap (starting JAX takes seconds). The first save has already turned every
parameter into a cached numpy array, so a saver never calls into the XLA runtime, whose
threads do not survive a fork.
"""

import os
import shutil
import sys
import time
import warnings

from safetensors.numpy import save as safetensors_bytes

from samp_jax import QuantizedModel
from samp_jax.ptq import saved

CHUNKS = 8


def slow_disk(pause: float) -> None:
    def save_file(arrays, filename, metadata=None):
        data = safetensors_bytes(arrays, metadata=metadata)
        step = -(-len(data) // CHUNKS)
        with open(filename, "wb") as f:
            for start in range(0, len(data), step):
                f.write(data[start:start + step])
                f.flush()
                time.sleep(pause)

    def slowly(fn):
        def wrapped(*args, **kwargs):
            time.sleep(pause)
            out = fn(*args, **kwargs)
            time.sleep(pause)
            return out
        return wrapped

    saved.save_file = save_file
    os.rename = slowly(os.rename)
    shutil.rmtree = slowly(shutil.rmtree)


def main(source: str, scratch: str, pause: float) -> None:
    model = QuantizedModel.load(source)
    slow_disk(pause)
    model.save(scratch)
    start = time.perf_counter()
    model.save(scratch)  # a save that replaces a folder, as the savers' are
    print("ready", time.perf_counter() - start, flush=True)
    warnings.simplefilter("ignore")  # JAX and Python warn that fork() and threads do not mix
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:  # the saver
            try:
                while True:
                    model.save(line.strip())
                    os.write(1, b"saved\n")
            finally:
                os._exit(1)
        print("pid", pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print("reaped", os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
