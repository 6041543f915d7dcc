"""Last-token activation extraction on a tiny random Llama: hooks, BOS, batching, cache."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from truthprune import UserError, extract_last_token  # noqa: E402
from truthprune.models.adapter import resolve_layers  # noqa: E402
from truthprune.truth.activations import encode_statements, tokenizer_adds_bos  # noqa: E402
from truthprune.truth.last_token import length_sorted_batches, right_pad  # noqa: E402

STATEMENTS = [
    "The city of Lodz is in Poland.",
    "a",
    "Fifty-one is larger than fifty-two, as everyone knows by now.",
    "zz top",
    "x" * 40,
]


class CharTokenizer:
    """Character-level tokenizer without BOS (like SmolLM2's), with a chat template."""

    bos_token_id = 1
    eos_token_id = 2
    pad_token_id = 0
    chat_template = "{user}"

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [3 + (ord(c) % 120) for c in text]}

    def apply_chat_template(self, messages, tokenize=False):
        return "<u>" + messages[0]["content"] + "</u>\n"


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    return LlamaForCausalLM(cfg).eval()


def test_batched_equals_batch_size_one(model):
    tok = CharTokenizer()
    one = extract_last_token(model, tok, STATEMENTS, batch_size=1)
    for bs in (2, 5, 32):
        many = extract_last_token(model, tok, STATEMENTS, batch_size=bs)
        assert many.dtype == np.float32 and many.shape == (3, len(STATEMENTS), 32)
        rel = np.abs(many - one).max(axis=-1) / np.abs(one).max(axis=-1)
        assert rel.max() < 1e-4


def test_token_budget_and_row_cap_do_not_change_the_result(model):
    tok = CharTokenizer()
    one = extract_last_token(model, tok, STATEMENTS, token_budget=1)  # one statement per forward
    for budget, cap in ((8, None), (50, 2), (10**6, None), (10**6, 1)):
        many = extract_last_token(model, tok, STATEMENTS, token_budget=budget, batch_size=cap)
        assert np.abs(many - one).max() / np.abs(one).max() < 1e-5
    with pytest.raises(UserError, match="token budget"):
        extract_last_token(model, tok, STATEMENTS, token_budget=0)


@pytest.mark.parametrize("style", ["gemma", "smollm2"])
def test_batched_tokenisation_equals_one_call_per_statement(style):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))  # tiny_models (pytest runs in importlib mode)
    from tiny_models import word_tokenizer

    fast = word_tokenizer(style)
    assert fast.is_fast

    class OneByOne:  # the same tokenizer seen as a plain callable: one call per text
        bos_token_id = fast.bos_token_id
        chat_template = fast.chat_template

        def __call__(self, text, add_special_tokens=True):
            return fast(text, add_special_tokens=add_special_tokens)

        def apply_chat_template(self, *a, **kw):
            return fast.apply_chat_template(*a, **kw)

    texts = ["the city of paris is in france .", "a cat", "one two three four five six seven"]
    for chat in (False, True):
        assert encode_statements(fast, texts, chat_template=chat) == encode_statements(OneByOne(), texts, chat_template=chat)


def test_length_sorted_batches_respect_budget_and_cap():
    lengths = [5, 1, 9, 3, 3, 12, 2, 7]
    for budget, cap in ((1, None), (10, None), (12, 2), (100, None), (100, 3)):
        batches = length_sorted_batches(lengths, budget, cap)
        order = np.concatenate(batches)
        assert sorted(order.tolist()) == list(range(len(lengths)))  # every index once
        assert [lengths[i] for i in order] == sorted(lengths)  # ascending, ties by index
        for b in batches:
            assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= budget
            assert cap is None or len(b) <= cap
    assert len(length_sorted_batches(lengths, 10**6)) == 1


def test_right_pad_matches_a_plain_loop():
    seqs = [[5, 6, 7], [8], [9, 10]]
    ids, mask = right_pad(seqs, pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]


def test_matches_hidden_states_and_skips_final_norm(model):
    tok = CharTokenizer()
    acts = extract_last_token(model, tok, STATEMENTS[:1], batch_size=1)
    ids = torch.tensor([[tok.bos_token_id] + tok(STATEMENTS[0])["input_ids"]])
    with torch.no_grad():
        hs = model(ids, output_hidden_states=True).hidden_states
    for layer in (0, 1):
        np.testing.assert_allclose(acts[layer, 0], hs[layer + 1][0, -1].numpy(), rtol=1e-5, atol=1e-6)
    # the last hidden_states entry has the final RMSNorm applied; the hook output does not
    final_norm_input = acts[2, 0]
    assert not np.allclose(final_norm_input, hs[3][0, -1].numpy(), atol=1e-3)
    normed = model.model.norm(torch.tensor(final_norm_input)[None]).detach().numpy()[0]
    np.testing.assert_allclose(normed, hs[3][0, -1].numpy(), rtol=1e-4, atol=1e-5)


def test_bos_option_and_chat_template():
    tok = CharTokenizer()
    assert not tokenizer_adds_bos(tok)
    with_bos = encode_statements(tok, ["ab"], add_bos=True)[0]
    without = encode_statements(tok, ["ab"], add_bos=False)[0]
    assert with_bos == [1] + without
    chat = encode_statements(tok, ["ab"], chat_template=True, add_bos=False)[0]
    assert len(chat) == len("<u>ab</u>")  # trailing newline stripped: last token ends the turn


def test_layer_selection_order_and_errors(model):
    tok = CharTokenizer()
    full = extract_last_token(model, tok, STATEMENTS, batch_size=2)
    sub = extract_last_token(model, tok, STATEMENTS, layers=[-1, 0], batch_size=2)
    np.testing.assert_array_equal(sub[0], full[2])
    np.testing.assert_array_equal(sub[1], full[0])
    assert resolve_layers(None, 3) == [0, 1, 2]
    with pytest.raises(UserError, match="layer 3 does not exist"):
        resolve_layers([3], 3)
    with pytest.raises(UserError, match="batch-size"):
        extract_last_token(model, tok, STATEMENTS, batch_size=0)


def test_disk_cache_roundtrip(model, tmp_path):
    tok = CharTokenizer()
    a = extract_last_token(model, tok, STATEMENTS, fingerprint="fp1", cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1
    np.save(files[0], np.zeros_like(a))  # prove the second call reads the file
    b = extract_last_token(model, tok, STATEMENTS, fingerprint="fp1", cache_dir=tmp_path)
    assert np.all(b == 0)
    extract_last_token(model, tok, STATEMENTS, fingerprint="fp2", cache_dir=tmp_path)
    extract_last_token(model, tok, STATEMENTS, fingerprint="fp1", cache_dir=tmp_path, add_bos=False)
    extract_last_token(model, tok, STATEMENTS, fingerprint="fp1", cache_dir=tmp_path, layers=[0])
    assert len(list(tmp_path.glob("*.npy"))) == 4
