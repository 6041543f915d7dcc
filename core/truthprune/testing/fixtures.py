"""Small, deterministic stand-ins for what a plugin meets in a real run.

Why: a plugin's own tests should not need a downloaded model, a real tokenizer or calibration
data. Everything here is seeded and built in memory in well under a second:

* :func:`tiny_llama` - a random-weight 3-layer Llama (hidden 32, MLP 64, GQA 4/2 heads,
  vocabulary 128), what the core engine tests use;
* :class:`TinyTokenizer` - the slice of the Hugging Face tokenizer API calibration sources and
  the BOS rule use (``tokenizer(text)["input_ids"]``, ``add_special_tokens``, pad/eos/bos ids),
  one id per character, BOS = 1;
* :func:`tiny_calibration` - seeded token windows for :func:`tiny_llama`;
* :func:`fake_linear_stats` - :class:`truthprune.LinearStats` with ``gram``, ``sq_norm`` and
  ``sum`` computed from one seeded input matrix, so they agree with each other as the engine's do.
"""

from __future__ import annotations

from typing import Any
from ..plugin.interfaces import CalibrationSamples, LinearStats

VOCAB = 128
PAD, BOS, EOS = 0, 1, 2


class TinyTokenizer:
    """Characters to ids 3..127 (``3 + ord(c) % 125``), BOS first unless ``add_special_tokens=False``."""

    pad_token_id = PAD
    bos_token_id = BOS
    eos_token_id = EOS
    vocab_size = VOCAB
    padding_side = "right"
    chat_template = None

    def __call__(self, text: Any, add_special_tokens: bool = True, **_: Any) -> dict[str, Any]:
        if isinstance(text, (list, tuple)):
            rows = [self(t, add_special_tokens)["input_ids"] for t in text]
            return {"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]}
        ids = ([BOS] if add_special_tokens else []) + [3 + ord(c) % (VOCAB - 3) for c in str(text)]
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self(text, add_special_tokens)["input_ids"]

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        return "".join(chr(int(i) - 3) for i in ids if int(i) > EOS)

    def __len__(self) -> int:
        return VOCAB


def tiny_llama(seed: int = 0, layers: int = 3) -> Any:
    """A random-weight LlamaForCausalLM small enough to prune in milliseconds (eval mode, no KV cache)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.config.use_cache = False
    return model


def tiny_calibration(nsamples: int = 8, seqlen: int = 64, seed: int = 1) -> Any:
    """Seeded random token windows (all real tokens) for :func:`tiny_llama`."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (nsamples, seqlen), generator=g)
    return CalibrationSamples(ids, torch.ones_like(ids), description=f"tiny random ({nsamples}x{seqlen})")


def fake_linear_stats(in_features: int, n_tokens: int = 256, seed: int = 0, streams: tuple[str, ...] = ()) -> Any:
    """Float32 statistics of ``n_tokens`` seeded inputs (a few outlier features, as in LLMs):
    ``gram`` = X^T X, ``sq_norm`` = its diagonal, ``sum`` = column sums, and the dense-target ones
    against a drifted copy X_d of the inputs (``cross`` = X^T X_d, ``dense`` with X_d's ``sq_norm``
    and ``sum``); each named auxiliary stream gets its own statistics from another seed."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_tokens, in_features, generator=g, dtype=torch.float64)
    x[:, : max(1, in_features // 16)] *= 8.0  # outlier features
    xd = x + 0.1 * torch.randn(n_tokens, in_features, generator=g, dtype=torch.float64)  # the dense model's inputs
    gram = (x.T @ x).float()
    dense = LinearStats(n_tokens=n_tokens, sq_norm=(xd * xd).sum(0).float(), sum=xd.sum(0).float())
    st = LinearStats(n_tokens=n_tokens, sq_norm=gram.diagonal().clone(), gram=gram, sum=x.sum(0).float(),
                     cross=(x.T @ xd).float(), dense=dense)
    st.streams = {name: fake_linear_stats(in_features, n_tokens, seed + 1 + k) for k, name in enumerate(streams)}
    return st


def save_tiny_checkpoint(directory: Any, seed: int = 0, layers: int = 3) -> Any:
    """:func:`tiny_llama` saved with a real (character-level, saveable) Hugging Face tokenizer, so
    CLI commands (``truthprune prune --model DIR``, ``--offload``) can run on it. Returns the path."""
    from pathlib import Path

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    path = Path(directory)
    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, **{chr(32 + i): 3 + i for i in range(95)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<pad>", pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    tiny_llama(seed, layers).save_pretrained(path)
    hf.save_pretrained(path)
    return path
