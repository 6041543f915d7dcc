"""Tiny random-weight Llama and calibration windows (no downloads), from the core's plugin author
kit (``truthprune.testing``)."""

from truthprune.testing.pytest_fixtures import tiny_calibration, tiny_llama  # noqa: F401
