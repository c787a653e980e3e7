"""`keep_cpu_buffers`: freed host memory is reused, so a forward stops page-faulting its
temporaries in; refused (changing nothing) once JAX has started or when the user opts out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

from samp_jax.core import host_memory as memory

# A jitted function whose temporaries (about 100 MB) are above anything glibc serves from its
# heaps by default: each call maps them afresh unless the buffers are kept.
_FAULTS_PER_CALL = textwrap.dedent("""
    import json, resource, sys
    from samp_jax.core.host_memory import keep_cpu_buffers
    applied = keep_cpu_buffers() if sys.argv[1] == "keep" else False
    import jax, jax.numpy as jnp
    f = jax.jit(lambda x: (jnp.tanh(x) @ jnp.ones((4096, 8))).sum() + jnp.cumsum(jnp.tanh(x), 0).sum())
    x = jnp.ones((2048, 4096), jnp.float32) * 1e-3
    for _ in range(3):
        f(x).block_until_ready()
    faults = []
    for _ in range(7):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f(x).block_until_ready()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"applied": applied, "faults": min(faults)}))
""")


def _python(code: str, *args: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != memory.OPT_OUT_VARIABLE}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=300, check=True, env={**base, "JAX_PLATFORMS": "cpu", **env})
    return out.stdout.strip().splitlines()[-1]


def _transparent_huge_pages_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(_transparent_huge_pages_always(),
                    reason="this kernel backs every large mapping with huge pages: ~50 faults, not ~25,000")
@pytest.mark.slow
def test_kept_buffers_stop_the_page_faults_of_every_call():
    system = json.loads(_python(_FAULTS_PER_CALL, "system"))
    kept = json.loads(_python(_FAULTS_PER_CALL, "keep"))
    assert kept["applied"] and not system["applied"]
    # The fewest faults of 7 calls: with glibc's defaults every call maps ~100 MB afresh, i.e.
    # ~25,000 faults of 4 KiB; kept, a call needs none. (Not the mean: this VM's background
    # memory reclaim, kdamond, now and then takes pages back from any process.)
    assert system["faults"] > 10_000, system
    assert kept["faults"] < system["faults"] / 20, (kept, system)


@pytest.mark.slow
def test_the_command_line_keeps_buffers_before_jax_starts():
    code = textwrap.dedent("""
        import contextlib, io
        from samp_jax.core import host_memory
        from samp_jax.app import entry
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                entry.main(["eval", "--help"])
            except SystemExit:
                pass
        print(host_memory.cpu_buffers_kept())
    """)
    assert _python(code) == "True"
    assert _python(code, SAMP_JAX_MALLOC="system") == "False"  # the user's opt-out


def test_refused_once_jax_has_started(monkeypatch):
    jax.devices()  # this process's backend is up: the worker threads have their arenas
    calls = []
    monkeypatch.setattr(memory, "_glibc_mallopt", lambda: calls.append(1))
    assert memory.keep_cpu_buffers() is False and calls == []


@pytest.mark.parametrize("variable, value", [
    ("SAMP_JAX_MALLOC", "system"), ("SAMP_JAX_MALLOC", "off"),  # anything but "keep" opts out
    ("JAX_PLATFORMS", "cuda"), ("JAX_PLATFORMS", "tpu,cpu")])    # JAX will not run on the CPU
def test_nothing_changes_where_it_does_not_apply(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(memory, "_backends_started", lambda: False)
    calls = []
    monkeypatch.setattr(memory, "_glibc_mallopt", lambda: calls.append(1))
    assert memory.keep_cpu_buffers() is False and calls == []


_LARGE_BLOCK = textwrap.dedent("""
    import ctypes, json, sys
    from samp_jax.core import host_memory
    kept = host_memory.keep_cpu_buffers()
    changed = [host_memory.fit_to_row_length(int(n)) for n in sys.argv[1:]]

    class Info(ctypes.Structure):  # glibc's struct mallinfo2
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.mallinfo2.restype = Info
    block = libc.malloc(64 << 20)
    mapped = libc.mallinfo2().hblkhd  # bytes in mmap'd blocks
    libc.free(ctypes.c_void_p(block))
    print(json.dumps({"kept": kept, "changed": changed, "mapped": mapped}))
""")


def test_rows_past_512_tokens_give_large_blocks_back_to_mmap():
    """Kept, a 64 MB block comes from the one arena; once rows may be longer than
    `LONG_ROWS` tokens it is mapped (and unmapped when freed) again, as glibc does alone."""
    short = json.loads(_python(_LARGE_BLOCK, "128", "512"))
    long = json.loads(_python(_LARGE_BLOCK, "512", "8192", "8192"))
    assert short["kept"] and long["kept"]
    assert short["changed"] == [False, False] and short["mapped"] < (1 << 20)
    assert long["changed"] == [False, True, False] and long["mapped"] >= (64 << 20)
    system = json.loads(_python(_LARGE_BLOCK, "8192", SAMP_JAX_MALLOC="system"))
    assert system == {"kept": False, "changed": [False], "mapped": system["mapped"]}
    assert system["mapped"] >= (64 << 20)
