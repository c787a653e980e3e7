"""Calibration: observers record activation statistics, calibrators turn them into static INT8
clips, and `calibrate(model, batches, method)` returns a `Calibration` (one or several
methods' clips from one observation, or a per-site choice among them)."""

from calibrate.calibration.api import (AUTO_METHODS, Calibration, CalibrationError, calibrate,
                                       calibrate_candidates, per_site_calibration)
from calibrate.calibration.calibrators import CALIBRATORS, HistogramStats, get_calibrator

__all__ = ["AUTO_METHODS", "CALIBRATORS", "Calibration", "CalibrationError", "HistogramStats",
           "calibrate", "calibrate_candidates", "get_calibrator", "per_site_calibration"]
