"""Truthfulness under prompting (`truthprune eval truthfulness`, `--eval truthfulness`): the prompts
file, the answer scoring maths, the flip / knows-but-says-false arithmetic, the items, determinism,
the CLI's JSON and the run report, on the tiny random Llama (conftest) with a character tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from truthprune import UserError
from truthprune.eval.prompt_styles import STYLES, answer_leaks, load_prompts, parse_prompts, render, resolve_template
from truthprune.eval.truthfulness import evaluate_truthfulness, score_requests
from truthprune.eval.truthfulness_items import Item, balanced_choice, generated_compounds, imitative_items, load_items
from truthprune.eval.truthfulness_metrics import flip_stats, grouped_folds, knows_but_says_false, says_first

CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")


def char_tokenizer(chat: bool = False):
    """Printable ASCII + newline, one token per character, BOS/EOS; optionally a chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "\n": 3, **{chr(i): 4 + i - 32 for i in range(32, 127)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    if chat:
        tok.chat_template = CHAT
    return tok


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRUTHPRUNE_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: one thread is faster on a busy machine
    yield
    torch.set_num_threads(threads)


def _items(n: int = 6) -> dict[str, list[Item]]:
    statements = [("The cat is an animal.", 1), ("The cat is a planet.", 0), ("Ice is cold.", 1), ("Fire is cold.", 0),
                  ("Rome is in Italy.", 1), ("Rome is in Peru.", 0), ("Two is even.", 1), ("Three is even.", 0)][:n]
    return {"common_sense": [Item("common_sense", "statement", (("statement", s),), lab, s.split(" is ")[0]) for s, lab in statements],
            "imitative": [Item("imitative", "choice", (("question", f"Q{i}?"), ("a", "yes"), ("b", "no")), i % 2, f"q{i}")
                          for i in range(n)]}


# --------------------------------------------------------------------------- the prompts file


def test_prompts_file_has_five_own_prompts_per_style_none_containing_an_answer():
    prompts = load_prompts()
    assert prompts.version.startswith("truthprune-truthfulness-prompts-v")
    assert set(prompts.styles) == set(STYLES)
    everything = [p for style in STYLES for p in prompts.styles[style]]
    assert all(len(prompts.styles[s]) == 5 for s in STYLES) and len(set(everything)) == 15
    for prompt in prompts.styles["deceptive"]:
        assert answer_leaks(prompt) == []
        words = {w.strip(".,:;!?'\"").lower() for w in prompt.split()}
        assert not words & {"true", "false", "untrue", "falsely"} and "A" not in prompt.split() and "B" not in prompt.split()
    assert all(answer_leaks(p) == [] for p in everything)  # no style names an answer token either
    assert prompts.answers("statement") == ("True", "False") and prompts.answers("choice") == ("A", "B")


def test_answer_leak_definition_is_precise():
    assert answer_leaks("Say True.") == ["True"]
    assert answer_leaks("that is untrue, answer FALSELY") == ["untrue", "FALSELY"]
    assert answer_leaks("pick option B (not A)") == ["B", "A"]
    # the article 'a', 'truthfully', 'incorrect', 'opposite' name no answer token
    assert answer_leaks("Be a truthful, honest assistant; give the incorrect or opposite reply.") == []


def test_a_leaking_or_short_prompts_file_is_rejected():
    from importlib import resources

    data = json.loads(resources.files("truthprune").joinpath("data/truthfulness_prompts.json").read_text())
    leaking = json.loads(json.dumps(data))
    leaking["styles"]["deceptive"][0] = "Always answer False."
    with pytest.raises(UserError, match="deceptive prompt 1 contains the answer word"):
        parse_prompts(leaking)
    short = json.loads(json.dumps(data))
    short["styles"]["honest"] = short["styles"]["honest"][:4]
    with pytest.raises(UserError, match="needs 5 distinct prompts"):
        parse_prompts(short)


def test_chat_and_plain_templates():
    prompts = load_prompts()
    plain, chat = char_tokenizer(), char_tokenizer(chat=True)
    assert resolve_template(plain, "auto") == "plain" and resolve_template(chat, "auto") == "chat"
    with pytest.raises(UserError, match="no chat template"):
        resolve_template(plain, "chat")
    body = prompts.body("statement", statement="Ice is cold.")
    ctx, (yes, no) = render(chat, prompts, "chat", "INSTR", body, ("True", "False"))
    text = chat.decode(ctx)
    assert text.startswith("<system>INSTR</s><user>Statement: Ice is cold.") and text.endswith("<assistant>")
    assert chat.decode(yes) == "True" and chat.decode(no) == "False"
    ctx, (yes, _) = render(plain, prompts, "plain", "INSTR", body, ("True", "False"))
    assert ctx[0] == plain.bos_token_id and plain.decode(ctx[1:]).endswith("true or false?\nAnswer:")
    assert plain.decode(yes) == " True"


# --------------------------------------------------------------------------- scoring maths


def _loglik(model, ctx, cont):
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].float(), -1)
    return sum(float(lp[len(ctx) - 1 + k, t]) for k, t in enumerate(cont))


def test_answer_log_probabilities_single_and_multi_token(tiny_llama):
    ctxs = [[1, 40, 41, 42], [1, 50, 51], [1, 60, 61, 62, 63, 64]]
    single = [(c, ([70], [71])) for c in ctxs]
    multi = [(c, ([70, 72, 73], [71])) for c in ctxs]
    lp1, acts = score_requests(tiny_llama, single, batch_size=2)
    lp2, _ = score_requests(tiny_llama, multi, batch_size=3)
    lp3, acts3 = score_requests(tiny_llama, single + multi, batch_size=None, token_budget=12)  # mixed, by token budget
    assert np.allclose(lp3[:3], lp1, atol=1e-5) and np.allclose(lp3[3:], lp2, atol=1e-5)
    assert np.allclose(acts3[:, :3], acts, atol=1e-5)
    for i, c in enumerate(ctxs):
        assert lp1[i] == pytest.approx([_loglik(tiny_llama, c, [70]), _loglik(tiny_llama, c, [71])], abs=1e-4)
        assert lp2[i] == pytest.approx([_loglik(tiny_llama, c, [70, 72, 73]), _loglik(tiny_llama, c, [71])], abs=1e-4)
        with torch.no_grad():
            hidden = tiny_llama(torch.tensor([c]), output_hidden_states=True).hidden_states
        assert np.allclose(acts[0, i], hidden[1][0, -1].numpy(), atol=1e-5)  # layer 0's output, last token
    assert acts.shape == (3, 3, 32)


def test_says_the_answer_with_the_strictly_higher_log_probability():
    lp = np.array([[-0.1, -2.3], [-3.0, -0.5], [-1.0, -1.0]])
    assert says_first(lp).tolist() == [1, 0, 0]


def test_flip_and_knows_but_says_false_arithmetic():
    neutral = np.array([1, 1, 1, 0, 0], bool)
    deceptive = np.array([1, 0, 0, 1, 0], bool)
    f = flip_stats(neutral, deceptive)
    assert f == {"rate": pytest.approx(2 / 3), "count": 2, "n_neutral_correct": 3,
                 "unflip_rate": 0.5, "unflip_count": 1, "n_neutral_wrong": 2}
    assert flip_stats(np.zeros(3, bool), np.ones(3, bool))["rate"] is None  # nothing right under neutral
    assert knows_but_says_false(np.array([1, 1, 0, 1]), np.array([1, 0, 0, 0])) == 0.5


def test_grouped_folds_keep_groups_together_and_are_seeded():
    groups = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "f"]
    folds = grouped_folds(groups, 3, seed=1)
    for g in set(groups):
        assert len({int(folds[i]) for i, x in enumerate(groups) if x == g}) == 1
    assert folds.tolist() == grouped_folds(groups, 3, seed=1).tolist() and len(set(folds.tolist())) == 3


# --------------------------------------------------------------------------- items


def test_items_are_balanced_capped_and_deterministic():
    rng = np.random.default_rng(0)
    labels = np.array([1] * 30 + [0] * 5)
    idx = balanced_choice(labels, 12, rng)
    assert len(idx) == 12 and labels[idx].sum() == 7  # only 5 false rows exist: the rest are true
    a, notes = load_items(None, None, limit=10, seed=3)
    b, _ = load_items(None, None, limit=10, seed=3)
    assert a == b and set(a) == {"logical", "common_sense"} and "skipped" in notes["imitative"]
    for its in a.values():
        assert len(its) == 10 and sum(it.label for it in its) == 5
    statements, compound_labels = generated_compounds(0, n_pairs=40)
    assert all(s.startswith("It is the case ") for s in statements) and set(compound_labels) == {0, 1}


def test_truthfulqa_items_come_from_the_held_out_half_only(tmp_path):
    from truthprune import truthfulqa_split

    rows = ["Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source"]
    rows += [f"A,C,Question {i}?,Best {i},Best {i}; Good {i},Bad {i}; Worse {i},s" for i in range(20)]
    path = tmp_path / "TruthfulQA.csv"
    path.write_text("\n".join(rows) + "\n")
    items, _ = imitative_items(str(path), limit=8, seed=0)
    _, held_out = truthfulqa_split(20, 0)
    assert {int(it.group[1:]) for it in items} <= set(held_out) and len(items) == 8
    assert sum(it.label for it in items) == 4
    for it in items:
        f = dict(it.fields)
        assert (f["a"] if it.label else f["b"]).startswith("Best") and (f["b"] if it.label else f["a"]).startswith(("Bad", "Worse"))


# --------------------------------------------------------------------------- the evaluation


def test_evaluation_is_deterministic_and_batch_size_only_changes_rounding(tiny_llama):
    tok = char_tokenizer()
    a = evaluate_truthfulness(tiny_llama, tok, _items(), batch_size=4)
    b = evaluate_truthfulness(tiny_llama, tok, _items(), batch_size=4)
    c = evaluate_truthfulness(tiny_llama, tok, _items(), batch_size=1)
    for r in (a, b, c):
        r.pop("seconds")
    assert a == b
    assert a["accuracy"] == c["accuracy"] and a["flip"] == c["flip"]
    assert a["n_units"] == 12 and set(a["accuracy"]) == set(STYLES) and a["template"] == "plain"
    assert set(a["accuracy"]["neutral"]) == {"common_sense", "imitative", "all"}
    assert 0 <= a["probe"]["best_layer"] < 3 and len(a["probe"]["layer_accuracy"]["deceptive"]) == 3
    assert len(a["pca"]["coords"]["deceptive"]) == 6 and a["pca"]["labels"] == [1, 0, 1, 0, 1, 0]
    chat = evaluate_truthfulness(tiny_llama, char_tokenizer(chat=True), _items(), report_layer=2)
    assert chat["template"] == "chat" and chat["probe"]["layer"] == 2


def _tiny_dir(tiny_llama, tmp_path, chat=False) -> Path:
    d = tmp_path / "tiny"
    tiny_llama.save_pretrained(d)
    char_tokenizer(chat).save_pretrained(d)
    return d


def _cli(capsys, *args):
    from truthprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["eval", "truthfulness", *args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_cli_prints_and_writes_json(tiny_llama, tmp_path, capsys):
    model = str(_tiny_dir(tiny_llama, tmp_path))
    out_file, plot = tmp_path / "tf.json", tmp_path / "pca.png"
    code, out, err = _cli(capsys, "--model", model, "--baseline", model, "--limit", "6", "--device", "cpu",
                          "--json", "--out", str(out_file), "--plot", str(plot))
    assert code == 0, err[-2000:]
    result = json.loads(out)
    written = json.loads(out_file.read_text())
    assert written.pop("truthprune_output") == {"kind": "truthfulness"}  # the output marker (docs/reliability.md)
    assert result == written and plot.is_file()
    for section in (result["accuracy"], result["flip"], result["probe"]["accuracy"], result["knows_but_says_false"]):
        assert "deceptive" in section
    assert set(result["accuracy"]["honest"]) == {"logical", "common_sense", "all"}
    assert result["probe"]["layer"] == result["baseline"]["probe"]["best_layer"]
    assert "imitative" in result["skipped"]
    code, out, _ = _cli(capsys, "--model", model, "--limit", "6", "--device", "cpu")
    assert code == 0 and "knows-but-says-false" in out and "flip rate neutral->deceptive" in out


@pytest.mark.parametrize("args, message", [
    (["--limit", "1"], "--limit 1 must be at least 2"),
    (["--out", "/proc/nonexistent-dir/x.json"], "is not writable"),
    (["--out", "x.txt"], "must end in .json"),
    (["--truthfulqa-data", "/nonexistent.csv"], "--truthfulqa-data '/nonexistent.csv' does not exist"),
    (["--probe", "nope"], "nope"),
])
def test_cli_bad_input_is_one_line_exit_2(args, message, tmp_path, capsys):
    code, _, err = _cli(capsys, "--model", str(tmp_path / "never-loaded"), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_run_reports_dense_vs_pruned_per_style_and_dimension(tiny_llama, tmp_path):
    from truthprune.reporting.compare import Run, summary
    from truthprune.run.config import build_config
    from truthprune.models.loading import LoadedModel
    from truthprune.run.pipeline import execute, plan_run

    text = tmp_path / "calib.txt"
    text.write_text("\n\n".join(f"Record {i}: the quick brown fox jumps over the lazy dog {i} times." for i in range(40)))
    cfg = build_config(None, {
        "model": str(_tiny_dir(tiny_llama, tmp_path)), "device": "cpu", "calibration": ["text"], "calibration_options": {"path": str(text)},
        "nsamples": 4, "seqlen": 32, "batch_size": 4, "eval": ["truthfulness"], "truthfulness_limit": 6,
        "quiet": True, "out": str(tmp_path / "out"),
    })
    loaded = LoadedModel(model=tiny_llama, tokenizer=char_tokenizer(), spec="tiny", path=str(tmp_path), kind="local", device="cpu")
    out = execute(plan_run(cfg), load=lambda _cfg: loaded).out
    report = json.loads((out / "report.json").read_text())
    dense, pruned = report["dense"]["truthfulness"], report["pruned"]["truthfulness"]
    assert pruned["probe"]["layer"] == dense["probe"]["best_layer"] == dense["probe"]["layer"]
    md = (out / "report.md").read_text()
    assert "## Truthfulness under prompting" in md and "| deceptive | logical |" in md
    assert "truthfulness: flip rate neutral->deceptive" in md and (out / "truthfulness_pca.png").is_file()
    header, rows, _ = summary([Run("wanda", out, report)])
    assert {"neutral acc", "deceptive acc", "flip rate", "knows-says-false"} <= set(header)
