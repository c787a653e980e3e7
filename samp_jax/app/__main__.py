"""`python -m samp_jax.app ...` runs the `samp-jax` command line."""

import sys

from samp_jax.app.entry import main

sys.exit(main())
