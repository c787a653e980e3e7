"""Calibration and sensitivity search: observers, calibrators and `calibrate`."""

from calibrate.calibrators import CALIBRATORS, HistogramStats, get_calibrator
from calibrate.calibration import Calibration, CalibrationError, calibrate

__all__ = ["CALIBRATORS", "Calibration", "CalibrationError", "HistogramStats", "calibrate",
           "get_calibrator"]
