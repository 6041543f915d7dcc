"""Sampling calibration text from the dense model itself, batched, with a KV cache.

Why: without network the only English text guaranteed to exist is what ships with Python and
what the model can write. Text the model samples at temperature 1 follows the model's own
distribution, which is what the calibration statistics are meant to describe.

Determinism: batch b uses its own ``torch.Generator`` seeded from (seed, b), prompts are a
seeded shuffle of :data:`PROMPTS`, and sampling happens on the CPU in float32, so the same
(model, tokenizer, nsamples, seqlen, seed, options) gives the same tokens.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

PROMPT_SET_VERSION = 1

# Short, topic-diverse openings written for truthprune: news, science, fiction, instructions,
# history, everyday life. Only the first few tokens are fixed; the model writes the rest.
PROMPTS: tuple[str, ...] = (
    "The history of the city begins",
    "Scientists have recently discovered",
    "In the kitchen, my grandmother",
    "The main advantage of this method is",
    "Dear editor,",
    "When the war ended,",
    "A simple way to learn a new language is",
    "The museum's collection includes",
    "Once upon a time",
    "The economy of the region",
    "In this tutorial, we will",
    "The river flows",
    "According to the report,",
    "The football season",
    "Many people believe that",
    "The patient was admitted",
    "Our company was founded",
    "The theory of evolution",
    "Yesterday the city council",
    "The recipe calls for",
    "The spacecraft",
    "In mathematics, a prime number",
    "The village lies",
    "The band released their first album",
    "Climate change is",
    "The old house at the end of the street",
    "To install the software,",
    "The election results",
    "Photosynthesis is the process",
    "The most important thing about friendship",
    "The court ruled that",
    "Early in the morning, the market",
)


def prompt_order(n: int, seed: int) -> list[str]:
    """n prompts: passes over a seeded shuffle of PROMPTS, so each is used about equally."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        block = list(PROMPTS)
        rng.shuffle(block)
        out.extend(block)
    return out[:n]


def batch_seed(seed: int, batch: int) -> int:
    """Seed of batch ``batch``'s generator: a hash, so nearby (seed, batch) pairs are unrelated."""
    digest = hashlib.sha256(f"truthprune-generated:{seed}:{batch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def banned_token_ids(tokenizer: Any, vocab_size: int) -> list[int]:
    """Special tokens (EOS, chat markers, padding) are never sampled: every row runs to full length."""
    ids = set(getattr(tokenizer, "all_special_ids", None) or [])
    for attr in ("eos_token_id", "pad_token_id", "bos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            ids.add(value)
    return sorted(i for i in ids if 0 <= i < vocab_size)


def next_token_distribution(logits, temperature: float, top_k: int, banned: Sequence[int]):
    """Float32 probabilities from last-position logits [B, V]: ban, scale by 1/T, keep top-k."""
    import torch

    logits = logits.float() / temperature
    if banned:
        logits[:, list(banned)] = float("-inf")
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits, dim=-1)


def sample_batch(
    model: Any,
    prompts: Sequence[Sequence[int]],
    length: int,
    generator,
    temperature: float = 1.0,
    top_k: int = 0,
    banned: Sequence[int] = (),
) -> list[list[int]]:
    """Each prompt continued to exactly ``length`` tokens (prompt included), sampled with a KV cache.

    Prompts are left-padded to a common width with explicit position ids, so every row's
    positions start at 0 like an unpadded run.
    """
    import torch

    device = next(model.parameters()).device
    prompts = [list(p[:length]) for p in prompts]  # a prompt longer than the window is the window
    if min(len(p) for p in prompts) < 1:
        raise ValueError("every prompt needs at least one token")
    if min(len(p) for p in prompts) == length:
        return prompts
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, p in enumerate(prompts):
        ids[r, width - len(p) :] = torch.tensor(p)
        mask[r, width - len(p) :] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    steps = length - min(len(p) for p in prompts)
    new_tokens = []
    with torch.inference_mode():
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device), use_cache=True)
        cache, last_pos = out.past_key_values, positions[:, -1:]
        for step in range(steps):
            probs = next_token_distribution(out.logits[:, -1, :].to("cpu"), temperature, top_k, banned)
            token = torch.multinomial(probs, 1, generator=generator)
            new_tokens.append(token)
            if step == steps - 1:
                break
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            last_pos = last_pos + 1
            out = model(
                input_ids=token.to(device), attention_mask=mask.to(device), position_ids=last_pos.to(device),
                past_key_values=cache, use_cache=True,
            )
            cache = out.past_key_values
    generated = torch.cat(new_tokens, dim=1).tolist()
    return [p + generated[r][: length - len(p)] for r, p in enumerate(prompts)]


def generate_windows(
    model: Any,
    tokenizer: Any,
    nsamples: int,
    seqlen: int,
    seed: int,
    temperature: float = 1.0,
    top_k: int = 0,
    batch_size: int = 16,
) -> list[list[int]]:
    """nsamples sequences of seqlen tokens: a prompt (tokenised with defaults) and its sampled continuation."""
    import torch

    vocab = int(model.get_output_embeddings().weight.shape[0]) if model.get_output_embeddings() is not None else model.config.vocab_size
    banned = banned_token_ids(tokenizer, vocab)
    prompts = [list(tokenizer(p)["input_ids"]) for p in prompt_order(nsamples, seed)]
    out: list[list[int]] = []
    was_training = model.training
    model.eval()
    try:
        for b, start in enumerate(range(0, nsamples, batch_size)):
            gen = torch.Generator().manual_seed(batch_seed(seed, b))
            out.extend(sample_batch(model, prompts[start : start + batch_size], seqlen, gen, temperature, top_k, banned))
            log.info("generated calibration text: %d/%d sequences of %d tokens", len(out), nsamples, seqlen)
    finally:
        model.train(was_training)
    return out
