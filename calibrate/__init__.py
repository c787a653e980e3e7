"""Calibration and sensitivity search (observers, calibrators, search)."""
