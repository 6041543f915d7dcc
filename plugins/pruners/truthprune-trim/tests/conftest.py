"""Tiny random-weight Llama and calibration windows (no downloads), shared by the tests here."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.config.use_cache = False
    return model


@pytest.fixture
def tiny_calibration():
    import torch

    from truthprune import CalibrationSamples

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 128, (8, 64), generator=g)
    return CalibrationSamples(ids, torch.ones_like(ids))
