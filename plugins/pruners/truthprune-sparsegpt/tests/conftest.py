"""Fixtures for the SparseGPT plugin's engine tests: a tiny random-weight Llama (as the core
tests build it), calibration windows, the same model saved with a character-level tokenizer for
the CLI, and a tiny true/false statement pair for the tplo allocator's truth profile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls: one thread avoids OpenMP spin-waits on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_llama():
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
    from truthprune import CalibrationSamples

    ids = torch.randint(0, 128, (8, 64), generator=torch.Generator().manual_seed(1))
    return CalibrationSamples(ids, torch.ones_like(ids))


def _char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{chr(32 + i): 3 + i for i in range(95)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture
def tiny_dir(tiny_llama, tmp_path) -> Path:
    tiny_llama.save_pretrained(tmp_path / "tiny")
    _char_tokenizer().save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


@pytest.fixture
def tiny_truth_dir(tmp_path) -> Path:
    """A cities pair small enough for the tiny model (the truth profile needs true/false sets)."""
    d = tmp_path / "truth"
    d.mkdir()
    rows_aff, rows_neg = ["statement,label"], ["statement,label"]
    for i in range(24):
        city, a, b = f"Town{i}", f"Land{i}", f"Land{(i + 7) % 24}"
        rows_aff += [f"The city of {city} is in {a}.,1", f"The city of {city} is in {b}.,0"]
        rows_neg += [f"The city of {city} is not in {a}.,0", f"The city of {city} is not in {b}.,1"]
    (d / "cities.csv").write_text("\n".join(rows_aff) + "\n")
    (d / "neg_cities.csv").write_text("\n".join(rows_neg) + "\n")
    return d
