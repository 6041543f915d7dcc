"""Tiny random-weight Llama, calibration windows (no downloads) and the CLI in a subprocess, from the
core's plugin author kit (``truthprune.testing``)."""

from truthprune.testing.pytest_fixtures import cli, tiny_calibration, tiny_llama  # noqa: F401
