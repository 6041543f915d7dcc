"""The reference vectors and the CLI in a subprocess, from the core's plugin author kit."""

from truthprune.testing.pytest_fixtures import cli, reference_vectors  # noqa: F401
