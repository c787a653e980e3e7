"""The precision-map search, above calibration: per-site latency tables and device targets,
objectives on the search split, allocation strategies, the search driver and its report."""
