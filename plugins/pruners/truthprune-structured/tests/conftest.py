"""Fixtures for the structured plugin: a tiny GQA Llama saved with a character tokenizer."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls: one thread avoids OpenMP spin-waits on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_tiny(seed: int = 0, dtype=torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).eval().to(dtype)
    model.config.use_cache = False
    return model


@pytest.fixture
def tiny():
    return make_tiny()


@pytest.fixture
def calib():
    from truthprune import CalibrationSamples

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 128, (6, 24), generator=g)
    mask = torch.ones_like(ids)
    mask[5, 18:] = 0  # one padded window: padding must not count
    return CalibrationSamples(ids, mask)


def char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{chr(32 + i): 3 + i for i in range(95)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture
def tiny_dir(tmp_path):
    path = tmp_path / "tiny"
    make_tiny().save_pretrained(path)
    char_tokenizer().save_pretrained(path)
    return path


@pytest.fixture
def text_file(tmp_path):
    """Local training/eval text: blank-line separated paragraphs of plain characters."""
    import random

    rng = random.Random(0)
    words = ["truth", "prune", "model", "layer", "the", "a", "of", "and", "heads", "channel", "entropy", "loss"]
    paras = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(40)]
    path = tmp_path / "text.txt"
    path.write_text("\n\n".join(paras))
    return path


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from truthprune.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def make_model():
    """``make_model(seed=0, dtype=torch.float32)``: a fresh tiny model (same seed -> same weights)."""
    return make_tiny


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (exit code, stdout, stderr)``, the CLI run in this process."""
    return lambda *args: run_cli(capsys, *args)
