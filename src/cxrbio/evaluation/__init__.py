"""Evaluation science: metrics, patient bootstrap, calibration, comparisons, multiple testing, external sets, the paper's tables."""
