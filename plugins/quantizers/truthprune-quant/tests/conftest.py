"""Fixtures: a tiny random-weight Llama (hidden 32, so group sizes 8/16 make several groups),
random calibration windows, and the same model saved with a character tokenizer for the CLI."""

from truthprune.testing.pytest_fixtures import one_thread, tiny_calibration, tiny_dir, tiny_llama  # noqa: F401
