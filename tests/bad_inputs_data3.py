"""Inputs of the third round of bad-input rows (tests/bad_inputs_rows3.py, bad_inputs_rows4.py):
checkpoints whose safetensors headers lie, configs that do not fit their weights, unusual
weight contents (NaN, int8), broken tokenizers and chat templates, incomplete GGUF files, JSON
that nests too deeply or holds 5,000-digit numbers, CSV labels that only look like 0/1, and
fake third-party plugins that misbehave at run time. Built once per session beside
bad_inputs_data's inputs."""

from __future__ import annotations

import json
from pathlib import Path

from bad_inputs_data import _safetensors_header, _write, make_plugin

DEEP = "[" * 50_000 + "]" * 50_000
HUGE_INT = "9" * 5000


def _copy_tiny(root: Path, name: str, config: dict | None = None, weights: bytes | None = None,
               tokenizer: bool = True) -> Path:
    d = root / name
    tiny = root / "tiny"
    cfg = json.loads((tiny / "config.json").read_text())
    _write(d / "config.json", json.dumps({**cfg, **(config or {})}))
    _write(d / "model.safetensors", weights if weights is not None else (tiny / "model.safetensors").read_bytes())
    if tokenizer:
        for f in tiny.iterdir():
            if f.name.startswith("tokenizer") or f.name == "special_tokens_map.json":
                _write(d / f.name, f.read_bytes())
    return d


def _lying_headers(root: Path) -> None:
    entries = {
        "m_hdr_shape": ({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 16]}}, 16),
        "m_hdr_dtype": ({"w": {"dtype": "Q9", "shape": [4], "data_offsets": [0, 16]}}, 16),
        "m_hdr_gap": ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                       "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}}, 24),
        "m_hdr_overlap": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                           "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, 16),
        "m_hdr_trailing": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 64),
        "m_hdr_negshape": ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, 16),
        "m_hdr_shapestr": ({"w": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}}, 16),
        "m_hdr_entrylist": ({"w": [1, 2, 3]}, 16),
    }
    for name, (header, data) in entries.items():
        _copy_tiny(root, name, weights=_safetensors_header(header) + b"\0" * data)
    deep = ("[" * 20_000 + "]" * 20_000).encode()
    _copy_tiny(root, "m_hdr_deep", weights=len(deep).to_bytes(8, "little") + deep)


def _config_variants(root: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    configs = {
        "m_heads": {"num_attention_heads": 5, "num_key_value_heads": 5, "head_dim": None},  # 32 is not divisible by 5
        "m_kvheads": {"num_key_value_heads": 3},  # 4 heads are not divisible by 3
        "m_act": {"hidden_act": "frobnicate"},
        "m_rope": {"rope_scaling": {"rope_type": "warp-drive", "factor": 2.0}},
        "m_layers1": {"num_hidden_layers": 1},  # the weights hold 3 layers
        "m_layersmillion": {"num_hidden_layers": 1_000_000},
    }
    for name, cfg in configs.items():
        _copy_tiny(root, name, config=cfg)
    state = load_file(root / "tiny" / "model.safetensors")
    q = next(k for k in state if "layers.1.self_attn.q_proj" in k)
    variants = {
        "m_untied_nohead": {k: v for k, v in state.items() if not k.startswith("lm_head")},
        "m_int8": {**state, q: state[q].to(torch.int8)},
        "m_bool": {**state, q: state[q] > 0},
        "m_nan": {**state, q: torch.full_like(state[q], float("nan"))},
        "m_inf": {**state, q: torch.full_like(state[q], float("inf"))},
        "m_extra": {**state, "model.layers.1.self_attn.extra_proj.weight": torch.zeros(32, 32)},
    }
    for name, tensors in variants.items():
        d = _copy_tiny(root, name)
        save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    # renamed tensors behind a pickle checkpoint: names unknown at plan time, refused as it loads
    d = root / "m_binrenamed"
    _copy_tiny(root, "m_binrenamed")
    (d / "model.safetensors").unlink()
    torch.save({k.replace("layers.0.", "layerz.0."): v for k, v in state.items()}, d / "pytorch_model.bin")


def _tokenizers(root: Path) -> None:
    _copy_tiny(root, "m_notok", tokenizer=False)
    d = _copy_tiny(root, "m_tokempty")
    _write(d / "tokenizer.json", "")
    d = _copy_tiny(root, "m_tokobject")
    _write(d / "tokenizer.json", "{}")
    _write(d / "tokenizer_config.json", json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    # a tokenizer whose ids run past the model's 64-row embedding
    from bad_inputs_data import char_tokenizer

    d = _copy_tiny(root, "m_tokbig", tokenizer=False)
    char_tokenizer().save_pretrained(d)
    small = root / "m_tokbig_src"
    _small_model(small, vocab=64)
    for f in ("config.json", "model.safetensors"):
        _write(d / f, (small / f).read_bytes())
    for name, template in (("m_chatbroken", "{% for m in messages %}{{ m.content }"),
                           ("m_chatraise", "{{ raise_exception('this template refuses every conversation') }}")):
        d = _copy_tiny(root, name)
        tc = json.loads((d / "tokenizer_config.json").read_text())
        _write(d / "tokenizer_config.json", json.dumps({**tc, "chat_template": template}))


def _small_model(d: Path, vocab: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    LlamaForCausalLM(cfg).save_pretrained(d)


def _ggufs(root: Path) -> None:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(root / "g_notok.gguf"), "llama")  # a tensor table, but no tokenizer metadata
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_tensor("token_embd.weight", np.ones((64, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _texts(root: Path) -> None:
    t = root / "t3"
    good = [json.dumps({"text": f"record number {i} says something about the weather and the sea"}) for i in range(8)]
    _write(t / "deep.jsonl", "\n".join(good[:3] + [DEEP]))
    _write(t / "bigint.jsonl", "\n".join(good[:3] + ['{"text": "x", "n": ' + HUGE_INT + "}"]))
    _write(t / "deeptext.jsonl", "\n".join(good[:3] + ['{"text": ' + "[" * 30_000 + "]" * 30_000 + "}"]))
    s = root / "stats3"
    _write(s / "bigint.json", '{"outlier_ratio_percent": [' + HUGE_INT + ", 1.0, 2.0]}")
    _write(s / "deep_object.json", '{"a": ' * 30_000 + "1" + "}" * 30_000)
    c = root / "toml3"
    for name, text in {
        "sparsity_str": 'sparsity = "0.4"\n', "nsamples_str": 'nsamples = "8"\n', "overwrite_yes": 'overwrite = "yes"\n',
        "nsamples_bool": "nsamples = true\n", "calib_empty": "calibration = []\n", "model_empty": 'model = ""\n',
        "seed_float": "seed = 1.0\n", "eval_str": 'eval = "ppl"\n', "bigint": f"nsamples = {HUGE_INT}\n",
        "deep": "x = " + "[" * 5_000 + "]" * 5_000 + "\n", "model_blank": 'model = "   "\n',
        "batch_float": "batch_size = 4.0\n", "quiet_int": "quiet = 1\n",
    }.items():
        _write(c / f"{name}.toml", text)
    tr = root / "truth3"
    rows = "\n".join(f'"Statement {i} is {"true" if i % 2 else "false"}.",{i % 2}' for i in range(2, 12))
    for name, body in {
        "almost1": 'statement,label\n"A is B.",0.99999999999999999\n' + rows,
        "almost0": 'statement,label\n"A is B.",0.0000000000000001\n' + rows,
        "sci": 'statement,label\n"A is B.",1e0\n' + rows,
        "duplabel": 'statement,label,label\n"A is B.",1,0\n' + rows.replace('",1', '",1,1').replace('",0', '",0,0'),
        "dupstatement": 'statement,statement,label\n"A is B.","C is D.",1\n',
        "hexlabel": 'statement,label\n"A is B.",0x1\n' + rows,
    }.items():
        _write(tr / name / "facts.csv", body + "\n")


PLUGIN_SOURCES3 = {
    "nanpruner": """
        import torch
        from truthprune import Pruner, PruneResult, hookimpl
        class P(Pruner):
            name = "nanpruner"
            def prune(self, weight, stats, target):
                mask = torch.zeros_like(weight, dtype=torch.bool)
                return PruneResult(mask=mask, weight=torch.full_like(weight, float("nan")))
        @hookimpl
        def register_pruners(register):
            register(P)
    """,
    "printer": """
        print("hello from a chatty plugin")
    """,
    "badquant": """
        from truthprune import Quantizer, hookimpl
        class Q(Quantizer):
            name = "badquant"
            def quantize(self, weight, stats, mask):
                return None
        @hookimpl
        def register_quantizers(register):
            register(Q)
    """,
    "owlclash": """
        from truthprune import Pruner, hookimpl
        class P(Pruner):
            name = "owlclash-pruner"
            def prune(self, weight, stats, target):
                raise NotImplementedError
        @hookimpl
        def register_pruners(register):
            register(P)
    """,
}

_SOURCE = """
    import torch
    from truthprune import CalibrationSamples, CalibrationSource, hookimpl
    class S(CalibrationSource):
        name = "{name}"
        def samples(self, tokenizer, nsamples, seqlen, seed):
            {body}
    @hookimpl
    def register_calibration_sources(register):
        register(S)
"""
SOURCE_BODIES = {
    "oovsource": "return CalibrationSamples(torch.full((nsamples, seqlen), 100000), torch.ones(nsamples, seqlen, dtype=torch.long))",
    "shortsource": "return CalibrationSamples(torch.ones(nsamples, seqlen - 3, dtype=torch.long), torch.ones(nsamples, seqlen - 3, dtype=torch.long))",
    "listsource": "return [[1] * seqlen] * nsamples",
    "floatsource": "return CalibrationSamples(torch.ones(nsamples, seqlen) * 1.5, torch.ones(nsamples, seqlen, dtype=torch.long))",
    "raisesource": "raise IndexError('list index out of range, deep inside the plugin')",
}


def _plugins(root: Path) -> None:
    for key, source in PLUGIN_SOURCES3.items():
        module = "tpbad_owlclash" if key == "owlclash" else None
        d = make_plugin(root, key, module=module, source=source)
        if key == "owlclash":  # its entry point is named like a first-party plugin's
            (d / "tpbad_owlclash-0.0.1.dist-info" / "entry_points.txt").write_text("[truthprune]\nowl = tpbad_owlclash\n")
    for key, body in SOURCE_BODIES.items():
        make_plugin(root, key, source=_SOURCE.format(name=key, body=body))


def build(root: Path) -> Path:
    """Everything above under ``root`` (which already holds bad_inputs_data's inputs)."""
    _lying_headers(root)
    _config_variants(root)
    _tokenizers(root)
    _ggufs(root)
    _texts(root)
    _plugins(root)
    return root
