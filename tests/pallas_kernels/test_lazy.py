"""JAX's Mosaic GPU Pallas API is imported when a kernel first reads it, not by every process
that imports samp-jax (most of a second of each command's start on a CPU)."""

import subprocess
import sys

from pallas_kernels.lazy import LazyModule
from tests.helpers import ROOT


def test_a_lazy_module_imports_on_first_read():
    done = subprocess.run([sys.executable, "-c", (
        "import sys\n"
        "from pallas_kernels.lazy import LazyModule\n"
        "lazy = LazyModule('wave')\n"
        "assert 'wave' not in sys.modules\n"
        "assert lazy.Error is sys.modules['wave'].Error and lazy.module() is sys.modules['wave']\n")],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert repr(LazyModule("wave")) == "LazyModule('wave')"


# the Mosaic GPU Pallas API and what only it imports (JAX itself imports a few small parts)
HEAVY = ("jax.experimental.pallas.mosaic_gpu", "jax._src.pallas.mosaic_gpu.core",
         "jax.experimental.mosaic.gpu")


def test_importing_the_library_leaves_mosaic_gpu_unimported():
    done = subprocess.run([sys.executable, "-c", (
        f"import sys\nHEAVY = {HEAVY!r}\n"
        "import samp_jax, calibrate, pallas_kernels.int8_matmul, samp_jax.app.cli\n"
        "print(sorted(m for m in HEAVY if m in sys.modules))\n")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
