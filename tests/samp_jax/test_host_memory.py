"""`keep_cpu_buffers`: freed host memory is reused, so a forward stops page-faulting its
temporaries in; refused (changing nothing) once JAX has started or when the user opts out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax

from samp_jax import host_memory as memory

# A jitted function whose temporaries (about 100 MB) are above anything glibc serves from its
# heaps by default: each call maps them afresh unless the buffers are kept.
_FAULTS_PER_CALL = textwrap.dedent("""
    import json, resource, sys
    from samp_jax.host_memory import keep_cpu_buffers
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


def _faults_per_call(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _FAULTS_PER_CALL, mode], capture_output=True,
                         text=True, timeout=300, check=True, env={"JAX_PLATFORMS": "cpu", **_env()})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != memory.OPT_OUT_VARIABLE}


def test_kept_buffers_stop_the_page_faults_of_every_call():
    system, kept = _faults_per_call("system"), _faults_per_call("keep")
    assert kept["applied"] and not system["applied"]
    # The fewest faults of 7 calls: with glibc's defaults every call maps ~100 MB afresh, i.e.
    # ~25,000 faults of 4 KiB; kept, a call needs none. (Not the mean: this VM's background
    # memory reclaim, kdamond, now and then takes pages back from any process.)
    assert system["faults"] > 10_000, system
    assert kept["faults"] < system["faults"] / 20, (kept, system)


def test_refused_once_jax_has_started(monkeypatch):
    jax.devices()  # this process's backend is up: the worker threads have their arenas
    calls = []
    monkeypatch.setattr(memory, "_glibc_mallopt", lambda: calls.append(1))
    assert memory.keep_cpu_buffers() is False and calls == []


def test_the_user_can_opt_out(monkeypatch):
    monkeypatch.setenv(memory.OPT_OUT_VARIABLE, "system")
    monkeypatch.setattr(memory, "_backends_started", lambda: False)
    calls = []
    monkeypatch.setattr(memory, "_glibc_mallopt", lambda: calls.append(1))
    assert memory.keep_cpu_buffers() is False and calls == []


def test_the_command_line_keeps_buffers_before_anything_else(monkeypatch):
    from samp_jax.app import cli, entry

    calls = []
    monkeypatch.setattr(entry, "keep_cpu_buffers", lambda: calls.append("keep") or False)
    monkeypatch.setattr(cli, "main", lambda argv: calls.append(("cli", argv)) or 0)
    assert entry.main(["eval", "--help"]) == 0
    assert calls == ["keep", ("cli", ["eval", "--help"])]
