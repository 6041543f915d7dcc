"""The inputs of the bad-input suite, generated once per session in a temporary directory: a tiny
random Llama (safetensors, character tokenizer), good data files, and every broken variant the
cases feed to the CLI (encodings, binary files, corrupt checkpoints, malformed statements...)."""

from __future__ import annotations

import json
import os
import struct
import textwrap
from pathlib import Path

LATIN1 = "Caf\xe9 cr\xe8me br\xfbl\xe9e, \xe0 la carte.\n".encode("latin-1")
BINARY = bytes(range(256)) * 8


def char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{chr(32 + i): 3 + i for i in range(95)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def _tiny(root: Path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).eval()
    tok = char_tokenizer()
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    model.config.save_pretrained(root / "m_binonly")  # a pickle-only checkpoint, as older tools wrote them
    torch.save(model.state_dict(), root / "m_binonly" / "pytorch_model.bin")
    tok.save_pretrained(root / "m_binonly")
    return model


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _safetensors_header(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw


def _model_dirs(root: Path) -> None:
    tiny_cfg = (root / "tiny" / "config.json").read_text()
    weights = (root / "tiny" / "model.safetensors").read_bytes()
    configs = {
        "m_bert": {"model_type": "bert", "architectures": ["BertForMaskedLM"]},
        "m_distilbert": {"model_type": "distilbert", "architectures": ["DistilBertForMaskedLM"]},
        "m_t5": {"model_type": "t5", "is_encoder_decoder": True, "architectures": ["T5ForConditionalGeneration"]},
        "m_nohead": {**json.loads(tiny_cfg), "architectures": ["LlamaModel"]},
        "m_notype": {"architectures": ["LlamaForCausalLM"]},
        "m_cfglist": [1, 2, 3],
    }
    for name, cfg in configs.items():
        _write(root / name / "config.json", json.dumps(cfg))
        _write(root / name / "model.safetensors", weights)
    _write(root / "m_cfgjson" / "config.json", "{not json")
    _write(root / "m_cfgbin" / "config.json", BINARY)
    _write(root / "m_nocfg" / "model.safetensors", weights)
    _write(root / "m_noweights" / "config.json", tiny_cfg)
    variants = {
        "m_random": os.urandom(4096),
        "m_trunc": weights[: len(weights) // 2],
        "m_empty": b"",
        "m_hdrhuge": (10**12).to_bytes(8, "little") + b"{}",
        "m_hdrjson": (16).to_bytes(8, "little") + b"{not json at all" + b"\0" * 64,
        "m_offsets": _safetensors_header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}) + b"\0" * 8,
    }
    for name, data in variants.items():
        _write(root / name / "config.json", tiny_cfg)
        _write(root / name / "model.safetensors", data)
    sized = json.loads(tiny_cfg)
    _write(root / "m_sizestr" / "config.json", json.dumps({**sized, "num_hidden_layers": "abc"}))
    _write(root / "m_sizestr" / "model.safetensors", weights)
    for name, bad in (("m_tokjson", "tokenizer.json"), ("m_genjson", "generation_config.json")):
        _write(root / name / "config.json", tiny_cfg)
        _write(root / name / "model.safetensors", weights)
        _write(root / name / bad, "{broken json")
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(root / "tiny" / "model.safetensors")
    renamed = {k.replace("layers.0.", "layerz.0."): v for k, v in state.items()}
    q = next(k for k in state if "q_proj" in k)
    for name, tensors in (("m_wrongnames", renamed), ("m_wrongshape", {**state, q: torch.zeros(5, 5)})):
        (root / name).mkdir(parents=True, exist_ok=True)
        _write(root / name / "config.json", tiny_cfg)
        save_file(tensors, str(root / name / "model.safetensors"), metadata={"format": "pt"})
    index_cases = {
        "m_idxjson": "{broken",
        "m_idxnomap": json.dumps({"metadata": {}}),
        "m_idxmissing": json.dumps({"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"}}),
        "m_idxdotdot": json.dumps({"weight_map": {"model.embed_tokens.weight": "../tiny/model.safetensors"}}),
    }
    for name, text in index_cases.items():
        _write(root / name / "config.json", tiny_cfg)
        _write(root / name / "model.safetensors.index.json", text)
    for f in (root / "tiny").iterdir():
        if f.name.startswith("tokenizer"):
            for name in [*configs, *variants, *index_cases, "m_noweights", "m_sizestr", "m_genjson", "m_wrongnames",
                         "m_wrongshape"]:
                _write(root / name / f.name, f.read_bytes())


def _ggufs(root: Path) -> None:
    import gguf
    import numpy as np

    path = root / "g_small.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.ones((64, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    data = path.read_bytes()
    _write(root / "g_trunc.gguf", data[: len(data) - 512])
    _write(root / "g_header.gguf", data[:40])
    _write(root / "g_random.gguf", b"GGUF" + os.urandom(2000))
    _write(root / "g_text.gguf", "this is not a gguf model\n")
    _write(root / "g_empty.gguf", b"")
    _write(root / "g_magic.gguf", b"GGUF")
    _write(root / "g_notensors.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 0))


def _texts(root: Path) -> None:
    from pydoc_data.topics import topics

    texts = [topics[k] for k in sorted(topics)]
    _write(root / "calib.txt", "\n\n".join(texts[:12]))
    _write(root / "eval.txt", "\n\n".join(texts[40:])[:1500])
    t = root / "t"
    _write(t / "latin1.txt", LATIN1 * 50)
    _write(t / "binary.txt", BINARY)
    _write(t / "nul.txt", b"\0" * 4096)
    _write(t / "empty.txt", b"")
    _write(t / "blank.txt", "\n \n\t\n")
    _write(t / "hi.txt", "hi")
    _write(t / "hihi.txt", "hi hi hi\n\nhi hi\n")
    _write(t / "utf16.txt", ("\n\n".join(texts[:12])).encode("utf-16"))
    _write(t / "bom8.txt", b"\xef\xbb\xbf" + "\n\n".join(texts[:12]).encode())
    _write(t / "few.txt", "the cat sat on the mat\n\nthe dog sat on the log\n")
    good = [json.dumps({"text": s}) for s in texts[:12]]
    _write(t / "good.jsonl", "\n".join(good))
    _write(t / "null.jsonl", "\n".join(good[:3] + ['{"text": null}']))
    _write(t / "num.jsonl", "\n".join(good[:3] + ['{"text": 5}']))
    _write(t / "list.jsonl", "\n".join(good[:3] + ['{"text": ["a", "b"]}']))
    _write(t / "nofield.jsonl", "\n".join(good[:3] + ['{"body": "x"}']))
    _write(t / "badline.jsonl", "\n".join(good[:3] + ["{oops"]))
    _write(t / "array.jsonl", "\n".join(good[:3] + ["[1, 2]"]))
    _write(t / "latin1.jsonl", b'{"text": "' + LATIN1.strip() + b'"}\n')
    _write(t / "garbage.parquet", os.urandom(3000))
    _write(t / "empty.parquet", b"")
    _write(t / "magic.parquet", b"PAR1" + os.urandom(100) + b"PAR1")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": texts[:12]}), t / "good.parquet")
    pq.write_table(pa.table({"text": texts[:12] + [None]}), t / "nulls.parquet")
    pq.write_table(pa.table({"n": list(range(12))}), t / "nocol.parquet")
    pq.write_table(pa.table({"text": list(range(12))}), t / "intcol.parquet")


def _tomls(root: Path) -> None:
    c = root / "toml"
    _write(c / "latin1.toml", b"pruner = \"wanda\"\n# " + LATIN1)
    _write(c / "binary.toml", BINARY)
    _write(c / "nul.toml", b"\0" * 64)
    _write(c / "invalid.toml", "pruner = \n")
    _write(c / "calib5.toml", "calibration = [\"text\"]\n[calibration_options]\ntext = 5\n")
    _write(c / "unknown.toml", "prunr = \"wanda\"\n")
    _write(c / "sparsity_str.toml", "sparsity = \"abc\"\n")
    _write(c / "windows0.toml", "ppl_max_windows = 0\n")
    _write(c / "probeopts.toml", "probe_options = 5\n")
    _write(c / "options_list.toml", "pruner_options = [1, 2]\n")
    (c / "adir.toml").mkdir(parents=True, exist_ok=True)
    _write(c / "utf16.toml", "sparsity = 0.4\n".encode("utf-16"))


def _statements(n: int, topic: str, negated: bool = False) -> list[tuple[str, int]]:
    rows = []
    for i in range(n):
        true = i % 2 == 0
        if negated:
            rows.append((f"The {topic} number {i} is not in country {i if true else i + 1}.", 0 if true else 1))
        else:
            rows.append((f"The {topic} number {i} is in country {i if true else i + 1}.", 1 if true else 0))
    return rows


def _csv(path: Path, rows, header: str = "statement,label") -> None:
    lines = [header] + [f'"{s}",{label}' for s, label in rows]
    _write(path, "\n".join(lines) + "\n")


def _truth(root: Path) -> None:
    tr = root / "truth"
    ok = tr / "ok"
    _csv(ok / "cities.csv", _statements(40, "city"))
    _csv(ok / "neg_cities.csv", _statements(40, "city", negated=True))
    _csv(ok / "facts.csv", _statements(30, "fact"))
    mis = tr / "misaligned"
    _csv(mis / "cities.csv", _statements(40, "city"))
    _csv(mis / "neg_cities.csv", _statements(40, "city", negated=True))
    _csv(mis / "facts_de.csv", _statements(50, "Fakt"))
    _csv(mis / "neg_facts_de.csv", _statements(49, "Fakt", negated=True))
    only = tr / "onlybad"
    _csv(only / "facts.csv", _statements(50, "fact"))
    _csv(only / "neg_facts.csv", _statements(49, "fact", negated=True))
    (tr / "nocsv").mkdir(parents=True, exist_ok=True)
    _write(tr / "nocsv" / "README.txt", "no statements here")
    singles = {
        "latin1": b"statement,label\n" + LATIN1.strip() + b",1\nx is y,0\n",
        "binary": BINARY,
        "nul": b"\0" * 100,
        "inf": "statement,label\nA is B.,inf\nC is D.,0\n",
        "nan": "statement,label\nA is B.,nan\nC is D.,0\n",
        "two": "statement,label\nA is B.,2\nC is D.,0\n",
        "yes": "statement,label\nA is B.,yes\nC is D.,0\n",
        "nocols": "sentence,truth\nA is B.,1\n",
        "header": "statement,label\n",
        "oneclass": "statement,label\nA is B.,1\nC is D.,1\n",
        "conflict": "statement,label\nA is B.,1\nA is B.,0\nC is D.,0\n",
        "empty": "",
        "quote": 'statement,label\n"A is B.,1\n',
    }
    for name, data in singles.items():
        _write(tr / name / "facts.csv", data)
    huge = [("The long statement " + "x" * 300_000 + ".", 1)] + _statements(9, "fact")[1:]
    _csv(tr / "huge" / "facts.csv", huge)


_TQA_HEADER = "Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source"


def _tqa(root: Path) -> None:
    q = root / "tqa"
    rows = [f'Adversarial,Misc,What is {i} plus {i}?,{2 * i},{2 * i}; about {2 * i},{2 * i + 1}; {2 * i + 2},src' for i in range(6)]
    _write(q / "ok.csv", "\n".join([_TQA_HEADER, *rows]) + "\n")
    _write(q / "latin1.csv", _TQA_HEADER.encode() + b"\n" + LATIN1)
    _write(q / "binary.csv", BINARY)
    _write(q / "nul.csv", b"\0" * 50)
    _write(q / "empty.csv", "")
    _write(q / "header.csv", _TQA_HEADER + "\n")
    _write(q / "nocols.csv", "Q,A\nx,y\n")
    _write(q / "noincorrect.csv", _TQA_HEADER + "\nAdversarial,Misc,Why?,Because,Because,,src\n")
    huge = [f'{"T" * 300_000},Misc,What is {i} plus {i}?,{2 * i},{2 * i},{2 * i + 1},src' for i in range(4)]
    _write(q / "huge.csv", "\n".join([_TQA_HEADER, *huge]) + "\n")


def _stats(root: Path) -> None:
    s = root / "stats"
    _write(s / "ok.json", json.dumps({"outlier_ratio_percent": [1.0, 2.0, 3.0], "target_sparsity": 0.5}))
    _write(s / "latin1.json", b'{"a": "' + LATIN1.strip() + b'"}')
    _write(s / "binary.json", BINARY)
    _write(s / "nul.json", b"\0" * 10)
    _write(s / "invalid.json", "{")
    _write(s / "list.json", "[1, 2]")
    _write(s / "nokeys.json", json.dumps({"x": 1}))
    _write(s / "strings.json", json.dumps({"outlier_ratio_percent": ["1", "2"]}))
    _write(s / "nan.json", '{"outlier_ratio_percent": [NaN, 1.0]}')
    _write(s / "deep.json", "[" * 100_000 + "]" * 100_000)
    (s / "adir.json").mkdir(parents=True, exist_ok=True)


PLUGIN_SOURCES = {
    "raises": "raise RuntimeError('boom at import')\n",
    "exit0": "raise SystemExit(0)\n",
    "exit3": "raise SystemExit(3)\n",
    "kbint": "raise KeyboardInterrupt\n",
    "nonclass": """
        from truthprune import hookimpl
        @hookimpl
        def register_pruners(register):
            register(lambda w: w)
    """,
    "instance": """
        from truthprune import Pruner, hookimpl
        class P(Pruner):
            name = "instancepruner"
            def prune(self, weight, stats, target):
                raise NotImplementedError
        @hookimpl
        def register_pruners(register):
            register(P({}))
    """,
    "noname": """
        from truthprune import Pruner, hookimpl
        class P(Pruner):
            def prune(self, weight, stats, target):
                raise NotImplementedError
        @hookimpl
        def register_pruners(register):
            register(P)
    """,
    "dupmag": """
        from truthprune import Pruner, hookimpl
        class P(Pruner):
            name = "magnitude"
            def prune(self, weight, stats, target):
                raise NotImplementedError
        @hookimpl
        def register_pruners(register):
            register(P)
    """,
    "hookraises": """
        from truthprune import hookimpl
        @hookimpl
        def register_allocators(register):
            raise ValueError("allocator table missing")
    """,
    "badhook": """
        from truthprune import hookimpl
        @hookimpl
        def register_pruners(register, unexpected_argument):
            pass
    """,
    "cmdraises": """
        from truthprune import hookimpl
        @hookimpl
        def register_commands(app):
            raise RuntimeError("command table broken")
    """,
}


def make_plugin(root: Path, key: str, module: str | None = None, source: str | None = None) -> Path:
    """A fake installed distribution ``tpbad-KEY`` on a directory to put on sys.path/PYTHONPATH."""
    module = module or f"tpbad_{key}"
    d = root / f"plug_{key}"
    _write(d / f"{module}.py", textwrap.dedent(source if source is not None else PLUGIN_SOURCES[key]))
    info = d / f"tpbad_{key}-0.0.1.dist-info"
    _write(info / "METADATA", f"Metadata-Version: 2.1\nName: tpbad-{key}\nVersion: 0.0.1\n")
    _write(info / "entry_points.txt", f"[truthprune]\ntpbad-{key} = {module}\n")
    return d


def build(root: Path) -> Path:
    """Everything above under ``root``; returns it."""
    _tiny(root)
    _model_dirs(root)
    _ggufs(root)
    _texts(root)
    _tomls(root)
    _truth(root)
    _tqa(root)
    _stats(root)
    for key in PLUGIN_SOURCES:
        make_plugin(root, key)
    _write(root / "afile", "just a file\n")
    return root
