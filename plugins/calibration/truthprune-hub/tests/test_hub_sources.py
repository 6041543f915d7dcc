"""c4 and wikitext2 calibration sources: local files, the reference windowing, offline errors."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from truthprune import UserError, get_registry
from truthprune_hub.text import long_text_windows, read_json_records

SHARED_DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"  # repo/../shared/data


class CharTokenizer:
    """Reversible toy tokenizer: BOS=1, then one id per character (ord), pad=0."""

    pad_token_id = 0
    eos_token_id = 2

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([1] if add_special_tokens else []) + [ord(c) for c in text]}


def decode(ids):
    return "".join(chr(i) for i in ids if i > 2)


def source(name, **options):
    return get_registry().create("calibration", name, options)


def write_jsonl(path: Path, docs: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": d, "url": "x"}) + "\n" for d in docs))
    return path


DOCS = ["short", "a" * 10 + "-the first long document-" + "b" * 30, "tiny", "c" * 5 + " the second long one " + "d" * 40]


def test_long_text_windows_follows_the_reference_draws():
    ids = list(range(10))
    got = long_text_windows(ids, nsamples=50, seqlen=3, seed=0)
    rng = random.Random(0)
    starts = [rng.randint(0, 10 - 3 - 1) for _ in range(50)]
    assert got == [[s, s + 1, s + 2] for s in starts]
    # the inclusive upper bound T - seqlen - 1 means the last token is never sampled
    assert all(9 not in w for w in got) and any(0 in w for w in got)
    assert long_text_windows(ids, 5, 3, 0) == got[:5]
    with pytest.raises(UserError, match="not more than --seqlen"):
        long_text_windows(ids, 1, 10, 0)


def test_c4_local_jsonl_document_rule(tmp_path):
    path = write_jsonl(tmp_path / "c4.jsonl", DOCS)
    src = source("c4", path=str(path))
    a = src.samples(CharTokenizer(), nsamples=6, seqlen=20, seed=0)
    b = src.samples(CharTokenizer(), nsamples=6, seqlen=20, seed=0)
    assert a.input_ids.shape == (6, 20) and torch.equal(a.input_ids, b.input_ids)
    assert torch.equal(a.attention_mask, torch.ones_like(a.input_ids))
    long_docs = [DOCS[1], DOCS[3]]
    for row in a.input_ids.tolist():  # windows come from documents longer than seqlen only
        assert any(decode(row) in "\x01" + d for d in long_docs)
    assert torch.equal(src.samples(CharTokenizer(), 3, 20, 0).input_ids, a.input_ids[:3])
    assert not torch.equal(src.samples(CharTokenizer(), 6, 20, 1).input_ids, a.input_ids)


def test_c4_reads_gzip_and_json_arrays(tmp_path):
    gz = tmp_path / "c4-train.00000-of-01024.json.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in DOCS)
    arr = tmp_path / "docs.json"
    arr.write_text(json.dumps([{"body": d} for d in DOCS]))
    assert read_json_records(gz) == DOCS
    assert read_json_records(arr, field="body") == DOCS
    a = source("c4", path=str(gz)).samples(CharTokenizer(), 4, 20, 0)
    b = source("c4", path=str(arr), field="body").samples(CharTokenizer(), 4, 20, 0)
    assert torch.equal(a.input_ids, b.input_ids)


def test_c4_local_file_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        source("c4", path=str(tmp_path / "missing.jsonl")).samples(CharTokenizer(), 1, 8, 0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"content": "x"}\n')
    with pytest.raises(UserError, match="no 'text' field"):
        source("c4", path=str(bad)).samples(CharTokenizer(), 1, 8, 0)
    bad.write_text("{not json\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: not valid JSON"):
        source("c4", path=str(bad)).samples(CharTokenizer(), 1, 8, 0)
    short = write_jsonl(tmp_path / "short.jsonl", ["ab", "cd"])
    with pytest.raises(UserError, match="no document longer than 8 tokens"):
        source("c4", path=str(short)).samples(CharTokenizer(), 1, 8, 0)
    with pytest.raises(UserError, match="option 'format'"):
        source("c4", format="windows")
    with pytest.raises(UserError, match="unknown option 'paht'"):
        source("c4", paht="x")


def test_single_and_concat_formats(tmp_path):
    path = write_jsonl(tmp_path / "c4.jsonl", DOCS)
    single = source("c4", path=str(path), format="single", padding_side="right").samples(CharTokenizer(), 8, 12, 0)
    assert single.input_ids.shape == (8, 12)
    short_rows = single.attention_mask.sum(1) < 12
    assert short_rows.any()  # "short"/"tiny" are padded on the right
    for ids, mask in zip(single.input_ids, single.attention_mask):
        n = int(mask.sum())
        assert mask[:n].all() and not mask[n:].any() and (ids[n:] == 0).all()
    left = source("c4", path=str(path), format="single", padding_side="left").samples(CharTokenizer(), 8, 12, 0)
    assert torch.equal(left.attention_mask.sum(1), single.attention_mask.sum(1))
    assert (left.attention_mask[short_rows, 0] == 0).all()
    concat = source("c4", path=str(path), format="concat").samples(CharTokenizer(), 4, 30, 0)
    assert concat.input_ids.shape == (4, 30) and concat.attention_mask.all()


def test_wikitext2_local_file_reference_rule(tmp_path):
    raw = " \n = Heading = \n \n First paragraph text here . \n \n Second one . \n"
    path = tmp_path / "wiki.train.raw"
    path.write_text(raw)
    joined = " ".join([line if line.strip() else "" for line in raw.splitlines(keepends=True)])
    ids = CharTokenizer()(joined)["input_ids"]
    got = source("wikitext2", path=str(path)).samples(CharTokenizer(), 5, 16, 3)
    assert got.input_ids.tolist() == long_text_windows(ids, 5, 16, 3)
    rows = source("wikitext2", path=str(path), format="single").samples(CharTokenizer(), 3, 40, 0)
    assert rows.input_ids.shape == (3, 40) and (rows.attention_mask.sum(1) < 40).all()


def test_wikitext2_shared_valid_file():
    valid = SHARED_DATA / "wikitext-2" / "valid.txt"
    if not valid.is_file():
        pytest.skip(f"{valid} is absent (third-party data lives in ../shared)")
    src = source("wikitext2", path=str(valid))
    a = src.samples(CharTokenizer(), 4, 256, 0)
    assert a.input_ids.shape == (4, 256)
    assert torch.equal(a.input_ids, src.samples(CharTokenizer(), 4, 256, 0).input_ids)
    text = valid.read_text(encoding="utf-8")
    for row in a.input_ids.tolist():  # every window is a piece of the file, newlines kept
        assert decode(row).replace("\n", "").replace(" ", "")[:50] in text.replace("\n", "").replace(" ", "")


OFFLINE_SCRIPT = """
from truthprune import UserError, get_registry
class Tok:
    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) for c in text]}
for name in ("c4", "wikitext2"):
    try:
        get_registry().create("calibration", name, {}).samples(Tok(), 1, 8, 0)
    except UserError as err:
        print(name, "|", err)
"""


def test_hub_path_fails_offline_with_one_actionable_line():
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    lines = [l for l in out.stdout.splitlines() if "|" in l]
    assert [l.split(" |")[0] for l in lines] == ["c4", "wikitext2"], out.stdout + out.stderr
    for line in lines:
        msg = line.split("| ", 1)[1]
        assert "hub is unreachable" in msg and "--calibration-opt path=FILE" in msg


def test_hub_paths_with_a_stand_in_hub(monkeypatch, tmp_path):
    """The hub branch (no path=): same windows as the local file, read lazily by index."""
    import datasets

    import truthprune

    calls = []

    def fake_hub(name, config=None, *, split, fix, data_files=None):
        calls.append((name, config, split, data_files))
        if name == "allenai/c4":
            return datasets.Dataset.from_dict({"text": DOCS, "url": ["u"] * len(DOCS)})
        return datasets.Dataset.from_dict({"text": ["", " = T = \n", "", " some words here . \n"]})

    monkeypatch.setattr(truthprune, "load_hub_dataset", fake_hub, raising=False)
    hub = source("c4").samples(CharTokenizer(), 5, 20, 0)
    local = source("c4", path=str(write_jsonl(tmp_path / "c4.jsonl", DOCS))).samples(CharTokenizer(), 5, 20, 0)
    assert torch.equal(hub.input_ids, local.input_ids)
    assert calls[0] == ("allenai/c4", None, "train", {"train": "en/c4-train.00000-of-01024.json.gz"})
    wiki = source("wikitext2").samples(CharTokenizer(), 2, 10, 0)
    joined = " ".join(["", " = T = \n", "", " some words here . \n"])
    assert wiki.input_ids.tolist() == long_text_windows(CharTokenizer()(joined)["input_ids"], 2, 10, 0)
    assert calls[1][:3] == ("wikitext", "wikitext-2-raw-v1", "train")
    with pytest.raises(UserError, match="no field 'body'"):
        source("c4", field="body").samples(CharTokenizer(), 1, 8, 0)
