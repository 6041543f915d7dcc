"""truthprune: prune LLMs without destroying their truth features, and measure it.

This module is the public API: plugins import from ``truthprune`` only, never from its
submodules. Names are resolved lazily (PEP 562) so that ``import truthprune`` does not import
torch; the heavy modules load on first use of a name that needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # interfaces (torch-free)
    "Plugin": "interfaces",
    "PluginConfig": "interfaces",
    "Pruner": "interfaces",
    "SparsityAllocator": "interfaces",
    "CalibrationSource": "interfaces",
    "Probe": "interfaces",
    "SparsityTarget": "interfaces",
    "LinearStats": "interfaces",
    "PruneResult": "interfaces",
    "Quantizer": "interfaces",
    "QuantResult": "interfaces",
    "LayerInfo": "interfaces",
    "CalibrationSamples": "interfaces",
    "CalibrationContext": "interfaces",
    "ProbeMeta": "interfaces",
    "STAT_SQ_NORM": "interfaces",
    "STAT_GRAM": "interfaces",
    "STAT_SUM": "interfaces",
    "StructuredPruner": "interfaces",
    "StructuredConfig": "interfaces",
    "UnitScores": "interfaces",
    "UserError": "errors",
    # a plugin broke its interface's contract (wrong mask shape, allocation length...): the plugin's fault
    "PluginContractError": "errors",
    # the one reader of user files (encodings, binary content, long CSV fields): plugins read through it too
    "read_text_file": "textio",
    "decode_text": "textio",
    "csv_dict_rows": "textio",
    "hookimpl": "hookspecs",
    "get_registry": "plugins",
    "load_plugins": "plugins",
    # pruning maths shared by pruners (torch)
    "unstructured_mask": "masks",
    "nm_mask": "masks",
    "mask_from_scores": "masks",
    "wanda_scores": "masks",
    # the quantized-weight format: dequantize codes, read a saved sidecar (torch)
    "dequantize": "quantization",
    "load_quantization": "quantization",
    # calibration helpers (torch)
    "document_windows": "calibration",
    "record_windows": "calibration",
    "padded_records": "calibration",
    "load_calibration": "calibration",
    "read_text_records": "calibration",
    # models and engine (torch)
    "load_model": "models.loading",
    "LoadedModel": "models.loading",
    "decoder_layers": "models.adapter",
    "prunable_linears": "models.adapter",
    "prune_model": "engine.sequential",
    # structured pruning: unit layout per decoder layer, kept widths, score -> slice -> rewritten config (torch)
    "StructuredLayer": "structured",
    "structured_layers": "structured",
    "plan_widths": "structured",
    "prune_structured": "structured",
    # writing checkpoints: refuse an existing target at plan time, save model + tokenizer + metadata atomically
    "check_target": "outputs",
    "save_pruned": "saving",
    "PruneReport": "engine.sequential",
    "BlockContext": "engine.block",  # what a block-aware pruner (uses_block) sees per decoder layer
    # bounded-memory (offload) pruning, data parallelism, the up-front memory check (torch)
    "prune_checkpoint": "engine.offload",
    "init_distributed": "engine.distributed",
    "check_prune_memory": "engine.memory",
    # truth separation per layer and the normalised profile (numpy, torch-free)
    "separation_ratio": "separation",
    "truth_profile": "separation",
    # evaluation: perplexity, TruthfulQA MC1/MC2, their texts and the held-out splits (torch inside)
    "perplexity": "eval.perplexity",
    "load_eval_text": "eval.perplexity",
    "pydoc_topics": "eval.perplexity",
    "wikitext_rows": "eval.perplexity",
    "evaluate_truthfulqa": "eval.truthfulqa",
    "truthfulqa_split": "eval.truthfulqa",
    "load_truthfulqa": "eval.truthfulqa",
    "TruthfulQAItem": "eval.truthfulqa",
    "load_hub_dataset": "eval.hub",
    "weights_fingerprint": "models.loading",
    "cache_root": "models.loading",
    # truth statements, activations and the probing protocol (owner: probes engineer)
    "StatementSet": "truth.datasets",
    "TopicPair": "truth.datasets",
    "load_statement_csv": "truth.datasets",
    "load_statement_dir": "truth.datasets",
    "default_topic_pairs": "truth.datasets",
    "generate_statement_sets": "truth.generate",
    "write_generated_sets": "truth.generate",
    # topic families and the default leak-free build/score split (pure Python)
    "topic_of": "truth.topics",
    "shared_topics": "truth.topics",
    "DEFAULT_BUILD_TOPICS": "truth.topics",
    "DEFAULT_BUILD_SETS": "truth.topics",
    "DEFAULT_SCORED_GROUPS": "truth.topics",
    "DEFAULT_SEEN_GROUPS": "truth.topics",
    "extract_last_token": "activations",
    "encode_statements": "activations",
    "load_truth_sets": "probing.runner",
    "logistic_regression": "probing.linear",
    "run_probe_protocol": "probing.protocol",
    "compare_dense_pruned": "probing.protocol",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'truthprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS) + ["__version__"]
