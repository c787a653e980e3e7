"""The public end-to-end workflows, above calibration and the search: `run_search` (calibrate,
search, quantize, score the held-out test split, report, save) and accuracy tables. The CLI,
the demo, the examples and the tools call these; nothing in the library below imports them."""
