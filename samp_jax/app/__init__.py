"""The application layer: the `samp-jax` CLI, the end-to-end pipeline, accuracy tables, the
benchmark and the demo. The only part of `samp_jax` that imports `calibrate`; nothing imports
it."""
