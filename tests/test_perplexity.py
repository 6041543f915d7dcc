"""Perplexity protocol (REFERENCE.md 11.1), evaluation texts, and `truthprune eval ppl`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from truthprune import UserError, load_eval_text, perplexity, pydoc_topics, wikitext_rows
from truthprune.eval.perplexity import eval_text, ppl_from_window_nll, window_count


class UniformLM(torch.nn.Module):
    """Equal logits for every token: the perplexity of any text is exactly the vocabulary size."""

    def __init__(self, vocab=50, context=64):
        super().__init__()
        self.vocab = vocab
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.config = type("Cfg", (), {"max_position_embeddings": context})()

    def forward(self, input_ids, use_cache=False):
        return type("Out", (), {"logits": torch.zeros(*input_ids.shape, self.vocab) + self.anchor})()


def test_window_count_drops_the_tail():
    assert window_count(10, 4) == 2
    assert window_count(12, 4) == 3
    assert window_count(12, 4, max_windows=1) == 1
    assert window_count(3, 4) == 0


def test_ppl_is_exp_of_mean_window_nll():
    assert ppl_from_window_nll([math.log(2), math.log(8)]) == pytest.approx(4.0)


def test_uniform_model_has_perplexity_vocab_size():
    out = perplexity(UniformLM(vocab=50), torch.randint(0, 50, (130,)), seqlen=32, batch_size=3)
    assert out["ppl"] == pytest.approx(50.0, rel=1e-6)
    assert (out["windows"], out["tokens"], out["scored_tokens"], out["seqlen"]) == (4, 130, 4 * 31, 32)
    assert "non-overlapping" in out["protocol"]


def test_matches_a_hand_loop_and_ignores_batching_and_the_tail(tiny_llama):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 128, (100,), generator=g)
    nll = []
    with torch.no_grad():
        for w in range(3):  # 100 // 30 windows; tokens 90..99 are dropped
            x = ids[30 * w : 30 * (w + 1)][None]
            nll.append(float(F.cross_entropy(tiny_llama(x).logits[0, :-1].float(), x[0, 1:])))
    expected = math.exp(sum(nll) / 3)
    one = perplexity(tiny_llama, ids, seqlen=30, batch_size=1)
    three = perplexity(tiny_llama, ids, seqlen=30, batch_size=3)
    assert one["ppl"] == pytest.approx(expected, rel=1e-6)
    assert three["ppl"] == pytest.approx(expected, rel=1e-5)
    changed_tail = ids.clone()
    changed_tail[90:] = 5
    assert perplexity(tiny_llama, changed_tail, seqlen=30)["ppl"] == pytest.approx(one["ppl"], rel=1e-6)
    assert perplexity(tiny_llama, ids, seqlen=30, max_windows=1)["windows"] == 1


def test_bad_requests_are_user_errors(tiny_llama):
    ids = torch.randint(0, 128, (600,))
    with pytest.raises(UserError, match="longer than the model's context of 256"):
        perplexity(tiny_llama, ids, seqlen=300)
    with pytest.raises(UserError, match="fewer than one window"):
        perplexity(tiny_llama, ids[:20], seqlen=30)
    with pytest.raises(UserError, match="1-D"):
        perplexity(tiny_llama, ids.view(2, 300), seqlen=30)


def test_wikitext_rows_match_the_hub_layout():
    raw = " \n = Title = \n \n Body text . \n"
    assert wikitext_rows(raw) == ["", " = Title = \n", "", " Body text . \n"]


def test_local_file_is_joined_like_hub_rows(tmp_path, char_tokenizer):
    f = tmp_path / "wiki.test.raw"
    f.write_text(" \n = Title = \n \n Body text . \n")
    ids = load_eval_text(str(f), char_tokenizer)
    expected = "\n\n".join(["", " = Title = \n", "", " Body text . \n"])
    assert ids.dtype == torch.long and ids.dim() == 1
    assert ids.tolist() == [1] + [ord(c) for c in expected]


def test_pydoc_eval_text_is_the_held_out_half():
    text, description = eval_text("pydoc")
    assert text == "\n\n".join(pydoc_topics("heldout"))
    assert "held-out" in description
    for calib_topic in pydoc_topics("calibration"):
        assert calib_topic not in text


def test_shared_wikitext_test_file(char_tokenizer, shared):
    path = shared("data", "wikitext-2", "test.txt")
    ids = load_eval_text(str(path), char_tokenizer)
    text = path.read_text(encoding="utf-8")
    assert ids.numel() == 1 + len("\n\n".join(wikitext_rows(text)))


def test_unknown_data_is_a_user_error():
    with pytest.raises(UserError, match="neither a known text"):
        eval_text("no-such-file.txt")


CLI = [sys.executable, "-c", "from truthprune.cli.main import main; main()"]


def test_cli_offline_wikitext_and_bad_data_fail_with_one_line():
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    for data, needle in (("wikitext2", "hub is unreachable"), ("missing.txt", "neither a known text")):
        out = subprocess.run(
            CLI + ["eval", "ppl", "--data", data],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 2, out.stderr
        errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
        assert len(errors) == 1 and needle in errors[0] and "--data" in errors[0]


@pytest.mark.integration
def test_cli_ppl_smollm2_json(shared):
    path = shared("data", "wikitext-2", "test.txt")
    out = subprocess.run(
        CLI + ["eval", "ppl", "--data", str(path), "--seqlen", "128",
         "--max-windows", "4", "--batch-size", "2", "--device", "cpu", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["windows"] == 4 and result["seqlen"] == 128
    assert 2.0 < result["ppl"] < 500.0  # a trained model on English, not a random one (~49152)
