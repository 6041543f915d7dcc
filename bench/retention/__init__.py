"""Helpers of bench/truth_retention.py: statistics (pure), statement selection and probing, method specs, result files, report."""
