"""Post-training quantization, above the models: `quantize(model, precision_map, calibration)`
builds a `QuantizedModel` (save / load with an authenticated sidecar), and `load(folder)` reads
any model folder samp-jax writes."""

from samp_jax.ptq.folder import SidecarNotSealedWarning
from samp_jax.ptq.loading import load
from samp_jax.ptq.quantized import QuantizedGemmSite, QuantizedModel, SiteCalibration, quantize
from samp_jax.ptq.site_calibration import ForeignClipsError, model_fingerprint

__all__ = ["ForeignClipsError", "QuantizedGemmSite", "QuantizedModel", "SidecarNotSealedWarning",
           "SiteCalibration", "load", "model_fingerprint", "quantize"]
