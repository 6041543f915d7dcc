"""Tiny random-weight Llama and calibration windows (no downloads), shared by the tests here;
built by the core's plugin author kit (``truthprune.testing``)."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_llama():
    from truthprune.testing import tiny_llama

    return tiny_llama(seed=0, layers=3)


@pytest.fixture
def tiny_calibration():
    from truthprune.testing import tiny_calibration

    return tiny_calibration(nsamples=8, seqlen=64, seed=1)
