"""The generated source (sampled from the model); pydoc is a core built-in (tests/test_builtin_defaults.py)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from truthprune import UserError, get_registry
from truthprune_offline.sampling import (
    PROMPTS,
    banned_token_ids,
    batch_seed,
    next_token_distribution,
    prompt_order,
    sample_batch,
)


class CharTokenizer:
    """BOS=1, one id per character (ASCII only, so ids fit a 128-token model), pad=0, eos=2."""

    pad_token_id = 0
    bos_token_id = 1
    eos_token_id = 2
    all_special_ids = [0, 1, 2]

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([1] if add_special_tokens else []) + [min(ord(c), 127) for c in text]}


@pytest.fixture
def tiny_llama():
    from truthprune.testing import tiny_llama

    return tiny_llama(seed=0, layers=3)


def source(name, **options):
    return get_registry().create("calibration", name, options)


# ---------------------------------------------------------------------------- sampling maths


def test_prompt_order_uses_every_prompt_equally():
    order = prompt_order(3 * len(PROMPTS), seed=5)
    assert Counter(order) == Counter({p: 3 for p in PROMPTS})
    assert order == prompt_order(3 * len(PROMPTS), seed=5)
    assert order[:7] == prompt_order(7, seed=5) and order != prompt_order(3 * len(PROMPTS), seed=6)


def test_batch_seed_is_deterministic_and_distinct():
    seeds = {batch_seed(s, b) for s in range(3) for b in range(3)}
    assert len(seeds) == 9 and batch_seed(0, 0) == batch_seed(0, 0)


def test_next_token_distribution_hand_example():
    logits = torch.log(torch.tensor([[1.0, 2.0, 4.0, 1.0]]))
    p = next_token_distribution(logits, temperature=1.0, top_k=0, banned=[3])
    assert torch.allclose(p, torch.tensor([[1 / 7, 2 / 7, 4 / 7, 0.0]]))
    p = next_token_distribution(logits, temperature=0.5, top_k=2, banned=[])  # squares, top 2
    assert torch.allclose(p, torch.tensor([[0.0, 4 / 20, 16 / 20, 0.0]]))


def test_banned_ids_include_specials_within_vocab():
    assert banned_token_ids(CharTokenizer(), 128) == [0, 1, 2]
    assert banned_token_ids(CharTokenizer(), 2) == [0, 1]


def _sample_without_cache(model, prompts, length, generator, banned):
    """Reference: recompute the whole left-padded batch every step (no KV cache)."""
    width = max(len(p) for p in prompts)
    rows = [[0] * (width - len(p)) + list(p) for p in prompts]
    masks = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    for _ in range(length - min(len(p) for p in prompts)):
        ids, mask = torch.tensor(rows), torch.tensor(masks)
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
        tok = torch.multinomial(next_token_distribution(logits, 1.0, 0, banned), 1, generator=generator)
        for r in range(len(rows)):
            rows[r].append(int(tok[r]))
            masks[r].append(1)
    return [row[width - len(p) :][:length] for row, p in zip(rows, prompts)]


def test_kv_cached_sampling_matches_full_recomputation(tiny_llama):
    prompts = [[1, 72, 105], [1, 65], [1, 84, 104, 101, 32]]
    a = sample_batch(tiny_llama, prompts, 24, torch.Generator().manual_seed(3), banned=[0, 1, 2])
    b = _sample_without_cache(tiny_llama, prompts, 24, torch.Generator().manual_seed(3), [0, 1, 2])
    assert a == b
    assert all(len(r) == 24 and r[: len(p)] == p for r, p in zip(a, prompts))
    assert not {0, 1, 2} & {t for r, p in zip(a, prompts) for t in r[len(p) :]}


# ---------------------------------------------------------------------------- generated source


def test_generated_source_is_deterministic_and_cached(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("TRUTHPRUNE_CACHE", str(tmp_path))
    src = source("generated", batch_size=4)
    a = src.samples(CharTokenizer(), 6, 32, 0, model=tiny_llama)
    files = list((tmp_path / "calibration" / "generated").glob("*.pt"))
    assert a.input_ids.shape == (6, 32) and a.attention_mask.all() and len(files) == 1
    nocache = source("generated", batch_size=4, cache=False)
    assert torch.equal(nocache.samples(CharTokenizer(), 6, 32, 0, model=tiny_llama).input_ids, a.input_ids)
    torch.save(torch.zeros(6, 32, dtype=torch.long), files[0])  # prove the cache is read
    assert not src.samples(CharTokenizer(), 6, 32, 0, model=tiny_llama).input_ids.any()
    assert not torch.equal(nocache.samples(CharTokenizer(), 6, 32, 1, model=tiny_llama).input_ids, a.input_ids)
    prompts = prompt_order(6, 0)
    for row, prompt in zip(a.input_ids.tolist(), prompts):
        ids = CharTokenizer()(prompt)["input_ids"][:32]
        assert row[: len(ids)] == ids


def test_generated_source_needs_the_model():
    with pytest.raises(UserError, match="needs the model"):
        source("generated").samples(CharTokenizer(), 1, 8, 0)
    with pytest.raises(UserError, match="option 'temperature'"):
        source("generated", temperature=0)


def test_the_pipeline_passes_the_model_and_leaves_the_source_unchanged(tiny_llama, tmp_path, monkeypatch):
    """Core hands the model to a needs_model source as a keyword: nothing is set on the plugin, and
    a caller without a model gets one line naming the source before any source runs."""
    from truthprune import load_calibration

    monkeypatch.setenv("TRUTHPRUNE_CACHE", str(tmp_path))
    src = source("generated", batch_size=4, cache=False)
    before = dict(vars(src))
    got = load_calibration([src], CharTokenizer(), 4, 16, 0, model=tiny_llama)
    assert got.input_ids.shape == (4, 16) and dict(vars(src)) == before
    assert torch.equal(got.input_ids, src.samples(CharTokenizer(), 4, 16, 0, model=tiny_llama).input_ids)
    with pytest.raises(UserError, match="source 'generated' samples text from the loaded model"):
        load_calibration([src], CharTokenizer(), 4, 16, 0)
