"""Fixtures: a tiny random-weight Llama (hidden 32, so group sizes 8/16 make several groups),
random calibration windows, and the same model saved with a character tokenizer for the CLI."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls: one thread avoids OpenMP spin-waits on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
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
def tiny_dir(tiny_llama, tmp_path):
    tiny_llama.save_pretrained(tmp_path / "tiny")
    _char_tokenizer().save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"
