"""Pallas GPU kernels for samp-jax, one folder per kernel."""
