"""Tiny tokenizers and random-weight model configs for the model-matrix and BOS tests.

Every family is built from its transformers config with tiny sizes (hidden 32, 2 layers), so a
whole load -> calibrate -> prune -> save -> reload round trip takes well under a second per
pruner on a CPU.
"""

from __future__ import annotations

WORDS = (
    "the city of paris is in france rome italy berlin germany madrid spain a an and not true false "
    "which river mountain lake north south east west big small old new capital country water fire "
    "red blue green one two three four five six seven eight nine ten cat dog bird fish tree house"
).split()

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)
GEMMA_TEMPLATE = "{{ bos_token }}{% for m in messages %}<start_of_turn>user\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"


def word_tokenizer(style: str = "gemma"):
    """A word-level fast tokenizer over :data:`WORDS` (ids < 80).

    ``style="gemma"``: adds ``<bos>`` to every text (add_bos_token, like Gemma/Llama-2/Llama-3);
    ``"smollm2"``: has a BOS token (``<|endoftext|>``) but adds none, ChatML template (SmolLM2);
    ``"template"``: adds none, but the chat template starts with ``<bos>``;
    ``"nobos"``: no BOS token at all (Qwen2 style).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>",
                "<start_of_turn>", "<end_of_turn>"]
    vocab = {t: i for i, t in enumerate([*specials, *WORDS, ".", ",", "\n"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    bos = {"gemma": "<bos>", "smollm2": "<|endoftext|>", "template": "<bos>", "nobos": None}[style]
    if style == "gemma":
        tk.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)])
    kwargs = {"bos_token": bos} if bos else {}
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", eos_token="<eos>", pad_token="<pad>", **kwargs)
    tok.add_special_tokens({"additional_special_tokens": specials[4:]})
    tok.chat_template = {"gemma": GEMMA_TEMPLATE, "template": GEMMA_TEMPLATE}.get(style, CHATML)
    return tok


def text(n_words: int = 600, seed: int = 0) -> str:
    import random

    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def _common(**extra):
    base = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256, bos_token_id=2, eos_token_id=1, pad_token_id=0)
    base.update(extra)
    return base


def family_configs() -> dict:
    """family -> transformers config (random weights are drawn by ``AutoModelForCausalLM.from_config``)."""
    from transformers import (Gemma2Config, Gemma3TextConfig, LlamaConfig, MistralConfig, MixtralConfig, Phi3Config,
                              Qwen2Config, Qwen3Config)

    return {
        "llama": LlamaConfig(**_common()),
        "mistral": MistralConfig(**_common(sliding_window=64)),
        "qwen2": Qwen2Config(**_common()),
        "qwen3": Qwen3Config(**_common(head_dim=8)),
        "gemma2": Gemma2Config(**_common(head_dim=8, sliding_window=64, query_pre_attn_scalar=8)),
        "gemma3": Gemma3TextConfig(**_common(head_dim=8, sliding_window=64, query_pre_attn_scalar=8)),
        "phi3": Phi3Config(**_common()),
        "mixtral": MixtralConfig(**_common(num_local_experts=4, num_experts_per_tok=2)),
    }


def build(family: str, seed: int = 0):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(family_configs()[family]).eval()
    model.config.use_cache = False
    return model
