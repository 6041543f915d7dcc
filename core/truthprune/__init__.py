"""truthprune: prune LLMs without destroying their truth features, and measure it.

This module is the public API: plugins import from ``truthprune`` only, never from its
submodules. Names are resolved lazily (PEP 562) so that ``import truthprune`` does not import
torch; the heavy modules load on first use of a name that needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # interfaces (torch-free)
    "Plugin": "plugin.interfaces",
    "PluginConfig": "plugin.interfaces",
    "Pruner": "plugin.interfaces",
    "SparsityAllocator": "plugin.interfaces",
    "CalibrationSource": "plugin.interfaces",
    "Probe": "plugin.interfaces",
    "SparsityTarget": "plugin.pruning_inputs",
    "LinearStats": "plugin.pruning_inputs",
    "PruneResult": "plugin.interfaces",
    "Quantizer": "plugin.interfaces",
    "QuantResult": "plugin.interfaces",
    "LayerInfo": "plugin.interfaces",
    "CalibrationSamples": "plugin.interfaces",
    "CalibrationContext": "plugin.interfaces",
    "ProbeMeta": "plugin.interfaces",
    "STAT_SQ_NORM": "plugin.pruning_inputs",
    "STAT_GRAM": "plugin.pruning_inputs",
    "STAT_SUM": "plugin.pruning_inputs",
    "STAT_CROSS": "plugin.pruning_inputs",
    "StructuredPruner": "plugin.interfaces",
    "StructuredConfig": "plugin.interfaces",
    "UnitScores": "plugin.interfaces",
    "UserError": "errors",
    # a plugin broke its interface's contract (wrong mask shape, allocation length...): the plugin's fault
    "PluginContractError": "errors",
    # the one reader of user files (encodings, binary content, long CSV fields): plugins read through it too
    "read_text_file": "textio",
    "decode_text": "textio",
    "csv_dict_rows": "textio",
    "parse_json": "textio",
    "require_file": "textio",  # a regular file, else one line saying what it is (a directory, a FIFO, ...)  # json.loads whose every failure (nesting, 5000-digit numbers) is one UserError line
    "option_value": "textio",  # a key=value option's value: JSON when it parses, else the text
    "hookimpl": "plugin.hookspecs",
    "get_registry": "plugin.registry",
    "load_plugins": "plugin.registry",
    # pruning maths shared by pruners (torch)
    "unstructured_mask": "pruning.masks",
    "lowest_per_row": "pruning.masks",
    "nm_mask": "pruning.masks",
    "mask_from_scores": "pruning.masks",
    "wanda_scores": "pruning.masks",
    # the quantized-weight format: dequantize codes, read a saved sidecar (torch)
    "dequantize": "pruning.quantization",
    "load_quantization": "pruning.quantization",
    # calibration helpers (torch)
    "document_windows": "calibration.windows",
    "record_windows": "calibration.windows",
    "padded_records": "calibration.windows",
    "load_calibration": "calibration.windows",
    "resolve_bos": "models.bos",  # the --bos rule (.window_bos: the id every window starts with, or None) for plugin commands
    "read_text_records": "calibration.windows",
    "statement_samples": "calibration.windows",  # right-padded statement stream, last-token statistics mask
    "window_samples": "calibration.windows",  # CalibrationSamples from token windows (attention mask of ones)
    "formatted_records": "calibration.windows",  # a record source's concat / single format
    "RecordsConfig": "builtins.text_source",  # the options every record source shares (format, padding_side)
    # models and engine (torch)
    "load_model": "models.loading",
    "resolve_model_path": "models.loading",  # a --model spec -> (local path or hub id, kind); converts an embedded GGUF once
    "LoadedModel": "models.loading",
    "decoder_layers": "models.adapter",
    "prunable_linears": "models.adapter",
    "prune_model": "pruning.engine.sequential",
    # core's default pruner, public so presets (owl, tplo) subclass it
    "WandaPruner": "builtins.wanda",
    "WandaConfig": "builtins.wanda",
    # structured pruning: unit layout per decoder layer, kept widths, score -> slice -> rewritten config (torch)
    "StructuredLayer": "pruning.structured",
    "structured_layers": "pruning.structured",
    "plan_widths": "pruning.structured",
    "prune_structured": "pruning.structured",
    # writing checkpoints: refuse an existing target at plan time, save model + tokenizer + metadata atomically
    "check_target": "outputs.atomic",
    # every output carries a marker of its kind; --overwrite replaces only marked outputs (docs/reliability.md)
    "atomic_dir": "outputs.atomic",
    "write_marker": "outputs.markers",
    "json_marker": "outputs.markers",
    "png_metadata": "outputs.markers",
    "write_json_atomic": "outputs.atomic",
    # the inputs of the running command: no output may be or contain one of them
    "declare_inputs": "outputs.atomic",
    "check_work_dir": "outputs.atomic",  # a scratch directory of a command (finetune --checkpoint-dir)
    "read_marker": "outputs.markers",
    "OUTPUT_MARKER": "outputs.markers",
    "model_input_paths": "models.spec",
    # the run pipeline as `truthprune run` / `sweep` drive it (for benchmarks that run it in process)
    "build_config": "run.config",  # defaults <- TOML <- overrides: a validated RunConfig
    "plan_run": "run.pipeline",  # every plugin and option resolved and checked, no model loaded
    "execute": "run.pipeline",  # run a plan's stages in order; returns the final RunState
    "SharedModel": "run.sweep",  # a load callable for execute(): one load, dense weights restored per run
    "check_model_spec": "models.formats",  # a --model value checked before anything loads (one-line UserError)
    "progress_bar": "progress",  # a bar with ETA on a terminal, nothing in a pipe: every long loop reports through it
    "save_pruned": "run.saving",
    "inspect_checkpoint": "reporting.inspect_model",  # sparsity, formats and warnings of a saved checkpoint, no model load
    "PruneReport": "pruning.engine.steps",
    "BlockContext": "plugin.pruning_inputs",  # what a block-aware pruner (uses_block) sees per decoder layer
    # bounded-memory (offload) pruning, data parallelism, the up-front memory check (torch)
    "prune_checkpoint": "pruning.engine.offload",
    "CheckpointReader": "pruning.engine.checkpoint",  # tensor names, sizes and contents of a safetensors checkpoint dir
    "init_distributed": "pruning.engine.distributed",
    "check_prune_memory": "pruning.engine.memory",
    # truth separation per layer and the normalised profile (numpy, torch-free)
    "separation_ratio": "truth.separation",
    "truth_profile": "truth.separation",
    # evaluation: perplexity, TruthfulQA MC1/MC2, their texts and the held-out splits (torch inside)
    "perplexity": "eval.perplexity",
    "load_eval_text": "eval.perplexity",
    "eval_text": "eval.perplexity",  # (text, description) of an evaluation spec: wikitext2, pydoc or a file
    "pydoc_topics": "eval.perplexity",
    "wikitext_rows": "eval.perplexity",
    "evaluate_truthfulqa": "eval.truthfulqa",
    "truthfulqa_split": "eval.truthfulqa",
    "load_truthfulqa": "eval.truthfulqa",
    "TruthfulQAItem": "eval.truthfulqa",
    "load_hub_dataset": "eval.hub",
    "hub_reachable": "eval.hub",
    "weights_fingerprint": "models.loading",
    "resolve_bos": "models.bos",  # the --bos rule for a tokenizer: which windows and statements start with BOS
    "cache_root": "cache",
    "single_thread": "threads",  # torch on one thread for a stretch of small ops (restored after)
    "read_cache_entry": "cache",  # a cache entry that does not read back is discarded (warning) and recomputed
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
    "extract_last_token": "truth.activations",
    "DEFAULT_TOKEN_BUDGET": "truth.last_token",  # padded tokens per forward extract_last_token batches by default (benches print it)
    "encode_statements": "truth.activations",
    "load_truth_sets": "truth.probing.runner",
    "logistic_regression": "truth.probing.linear",
    "run_probe_protocol": "truth.probing.protocol",
    "compare_dense_pruned": "truth.probing.protocol",
    # the protocol's building blocks, for benchmarks that score probes item by item (numpy)
    "probe_factory": "truth.probing.protocol",  # a probe name (+ options) -> a callable making fresh, checked probes
    "Topic": "truth.probing.protocol",  # a set with its row-aligned negated twin and per-row entity groups
    "build_topics": "truth.probing.protocol",  # statement sets -> Topics (X paired with neg_X)
    "grouped_split": "truth.probing.splits",  # entity-grouped train/test rows (a statement's twin on the same side)
    "balanced_rows": "truth.probing.splits",  # a seeded class-balanced row sample of at most N rows (statement caps)
    "group_rows": "truth.probing.splits",  # entity group ids of row-aligned sets
    "NEGATED_PREFIX": "truth.topics",  # "neg_": a negated twin's set name prefix
    "GENERATED_PREFIX": "truth.topics",  # "gen_": an offline generated set's name prefix next to the CSVs
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
