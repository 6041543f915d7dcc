"""The validated configuration of a ``truthprune run``.

Sources, in increasing priority: defaults, ``--config run.toml``, command-line flags. The TOML
file uses the same keys as :class:`RunConfig` (plugin options in ``[pruner_options]``,
``[allocator_options]``, ``[quantizer_options]``, ``[calibration_options.<source>]``, ``[probe_options]``).
Defaults are sized for a CPU and the embedded SmolLM2-135M model; they are documented in
docs/usage.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import UserError
from ..models.adapter import DEFAULT_IGNORE, DEFAULT_TARGETS

EVALS = ("ppl", "probe", "truthfulqa", "truthfulness")
DEFAULT_TRUTH_MAX_PER_SET = 100  # statements per set: a run of the embedded model within minutes on a CPU (docs/usage.md)
MIN_TRUTH_PER_SET = 40  # fewer leave a held-out split of a handful of statements


# CLI metadata on a field (json_schema_extra): SPLIT = the flag takes comma-separated lists;
# OPTIONS(flag) = a dict of plugin options given as repeatable ``--flag key=value``.
SPLIT = {"cli_split": True}


def OPTIONS(flag: str) -> dict[str, Any]:  # noqa: N802 (reads like the constant above)
    return {"cli_flag": flag}


class RunConfig(BaseModel):
    """Every setting of a run. Each field's description is its flag's help: the options of
    ``truthprune run`` (and of ``prune``/``sweep``/``config show``) are generated from these fields
    (truthprune.cli.run_cmd), so a setting is declared once."""

    # strict: a TOML "0.4", "8" or "yes", or nsamples = true, is a type error, not silently converted
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field("smollm2-135m", min_length=1, description="smollm2-135m (default, embedded), a model dir, a .gguf file or a hub id.")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="auto | float32 | bfloat16 | float16")
    trust_remote_code: bool = Field(False, description="Allow custom model code from the hub.")

    pruner: str = Field("wanda", description="Pruner name (see `truthprune plugins`): wanda, magnitude, owl, tplo, ...")
    # None: the pruner's default (uniform, or owl/tplo for presets)
    allocator: str | None = Field(None, description="Per-layer sparsity allocator; default: the pruner's own (uniform for wanda).")
    sparsity: float = Field(0.5, ge=0.0, lt=1.0, description="Target fraction of weights removed, in [0, 1).")
    nm: str | None = Field(None, description="N:M pattern, e.g. 2:4 (prune 2 of every 4).")  # "2:4" = prune 2 of every 4
    pruner_options: dict[str, Any] = Field(default_factory=dict, description="Pruner option key=value (repeatable).",
                                           json_schema_extra=OPTIONS("pruner-opt"))
    allocator_options: dict[str, Any] = Field(default_factory=dict, description="Allocator option key=value (repeatable).",
                                              json_schema_extra=OPTIONS("allocator-opt"))
    # quantize every linear right after pruning it (truthprune-quant: rtn, gptq)
    quantizer: str | None = Field(None, description="Quantize each linear after pruning it (rtn, gptq: pip install "
                                                    "truthprune-quant); --sparsity 0 quantizes only.")
    quantizer_options: dict[str, Any] = Field(default_factory=dict, description="Quantizer option key=value (repeatable).",
                                              json_schema_extra=OPTIONS("quantizer-opt"))  # --bits/--group-size land here

    calibration: list[str] = Field(default_factory=lambda: ["pydoc"], json_schema_extra=SPLIT, min_length=1,
                                   description="Calibration source(s), comma-separated or repeated; nsamples split evenly.")
    # key=value for all sources, or {source: {key: value}}
    calibration_options: dict[str, Any] = Field(default_factory=dict, json_schema_extra=OPTIONS("calibration-opt"),
                                                description="Source option key=value or source.key=value (repeatable).")
    nsamples: int = Field(32, ge=1, description="Calibration samples.")
    seqlen: int = Field(512, ge=8, description="Tokens per calibration sample and perplexity window.")
    batch_size: int = Field(8, ge=1, description="Samples per mini-batch through a layer.")
    seed: int = Field(0, description="Seed for calibration sampling and probes.")

    eval: list[str] = Field(default_factory=lambda: ["ppl", "probe"], json_schema_extra=SPLIT,
                            description="Evaluations: ppl,probe,truthfulqa,truthfulness.")
    ppl_data: str = Field("pydoc", description="pydoc (offline default) | wikitext2 (hub) | path to a .txt file.")
    # None: every window (pydoc: first 16, eval.perplexity.DEFAULT_MAX_WINDOWS)
    ppl_max_windows: int | None = Field(None, ge=1, description="Score only the first N perplexity windows (default: all; "
                                                                "the offline pydoc text: 16).")
    truthfulqa_data: str | None = Field(None, description="TruthfulQA.csv path (default: the hub).")
    truthfulqa_limit: int | None = Field(None, ge=1, description="Evaluate only the first N held-out questions.")
    # --eval truthfulness: items per dimension (balanced, seeded sample)
    truthfulness_limit: int = Field(200, ge=2, description="--eval truthfulness: items per dimension (default 200).")
    lm_eval_tasks: list[str] = Field(default_factory=list, json_schema_extra=SPLIT,
                                     description="lm-eval harness tasks, comma-separated (needs lm-eval: pip install 'lm-eval>=0.4.2').")
    lm_eval_limit: int | None = Field(None, ge=1, description="Evaluate only the first N examples of each lm-eval task.")
    lm_eval_fewshot: int | None = Field(None, ge=0, description="Few-shot examples per lm-eval task (default: each task's own).")
    lm_eval_include: list[str] = Field(default_factory=list, description="Directory of your own lm-eval task YAML files (repeatable).")
    probe: str = Field("logreg", description="Probe for the lie-detection evaluation (logreg, ttpd, mass-mean, ccs).")
    probe_options: dict[str, Any] = Field(default_factory=dict, description="Probe option key=value (repeatable).",
                                          json_schema_extra=OPTIONS("probe-opt"))
    # directory of Truth-is-Universal CSVs; None: generated offline sets
    truth_data: str | None = Field(None, description="Directory of true/false statement CSVs (default: generated offline sets).")
    truth_datasets: list[str] | None = Field(None, json_schema_extra=SPLIT, description="Which statement sets to use, comma-separated.")
    # the probes' statement budget: a seeded, class-balanced sample per topic (truth.probing.runner.cap_statement_sets)
    truth_max_per_set: int = Field(DEFAULT_TRUTH_MAX_PER_SET, ge=0, description="Statements per set for the probes and the TPLO "
                                   "truth profile: a seeded, class-balanced sample, so a run takes minutes on a CPU; 0 = "
                                   "every statement (the full protocol).")
    chat_template: bool = Field(False, description="Wrap statements in the chat template.")
    # BOS at the start of every window/statement (truthprune.models.bos)
    bos: Literal["auto", "always", "never"] = Field("auto", description="auto | always | never: start every window/statement "
                                                    "with BOS (auto: when the tokenizer or chat template adds one; docs/models.md).")
    bias_correction: bool = Field(False, description="After pruning each linear, add the dense-vs-pruned shift of its mean "
                                  "output on the calibration data as a bias (sets e.g. attention_bias/mlp_bias in the config).")
    targets: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS), json_schema_extra=SPLIT,
                               description="Weights to prune, module patterns inside a decoder block (comma-separated; default '*').")
    ignore: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORE), json_schema_extra=SPLIT,
                              description="Weights never pruned, module patterns (default: MoE routers and shared-expert gates; "
                                          "docs/models.md).")

    out: str = Field("runs/latest", description="Report directory (default runs/latest).")
    save: str | None = Field(None, description="Also save the pruned model (safetensors) here.")
    format: Literal["safetensors", "compressed-tensors"] = Field(
        "safetensors", description="--save format: safetensors (dequantized weights + truthprune's quantization sidecar) | "
                                   "compressed-tensors (packed int weights that transformers and vLLM load; needs a "
                                   "--quantizer and pip install 'truthprune[compressed-tensors]').")
    overwrite: bool = Field(False, description="Replace existing --out/--save directories.")
    # queue behind another process writing the same --out/--save (docs/reliability.md)
    wait: bool = Field(False, description="If another process is writing the same --out/--save, wait for it instead of failing.")
    # accept pickle-only (.bin) checkpoints; safetensors only otherwise
    allow_pickle: bool = Field(False, description="Accept a pickle-only (.bin) checkpoint; pickles can run code, so only for "
                                                  "files you trust.")
    quiet: bool = Field(False, description="No progress bars.", json_schema_extra={"cli_short": "-q"})

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("is empty; name smollm2-135m, a model directory, a .gguf file or a hub id")
        return v

    @field_validator("nm")
    @classmethod
    def _check_nm(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            n, m = (int(x) for x in v.split(":"))
        except ValueError:
            raise ValueError("must look like N:M, e.g. 2:4") from None
        if not 0 < n < m:
            raise ValueError(f"{v} needs 0 < N < M, e.g. 2:4")
        return v

    @field_validator("truth_max_per_set")
    @classmethod
    def _check_truth_budget(cls, v: int) -> int:
        if 0 < v < MIN_TRUTH_PER_SET:
            raise ValueError(f"{v} statements per set leave too few for a held-out split; use {MIN_TRUTH_PER_SET} or more "
                             "(0 = every statement)")
        return v

    @field_validator("eval")
    @classmethod
    def _check_eval(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if e not in EVALS]
        if bad:
            raise ValueError(f"unknown evaluation {bad[0]!r}; choose from {', '.join(EVALS)}")
        return v

    @model_validator(mode="after")
    def _check_combo(self) -> RunConfig:
        if self.nm is not None:
            n, m = self.nm_tuple
            if "sparsity" in self.model_fields_set and abs(self.sparsity - n / m) > 1e-12:
                # --nm fixes the sparsity at n/m; silently replacing an explicit one hid a typo
                raise ValueError(f"nm {self.nm} prunes {n / m:g} of the weights, but sparsity {self.sparsity:g} was also "
                                 "given; drop --sparsity (or the sparsity setting) or --nm")
            self.sparsity = n / m
        return self

    @property
    def nm_tuple(self) -> tuple[int, int] | None:
        if self.nm is None:
            return None
        n, m = (int(x) for x in self.nm.split(":"))
        return n, m


class OptionShortcut(NamedTuple):
    """A flag that sets one plugin option: ``--bits 4`` is ``--quantizer-opt bits=4``."""

    param: str  # the flag's parameter name (--group-size: group_size)
    field: str  # the RunConfig dict it lands in
    option: str  # the key in that dict
    kind: type  # the flag's value type (bool: a --x/--no-x pair)
    help: str


# Shortcut flags of run/prune/sweep (the allocators' own shortcuts, --owl-m ..., come from the
# installed allocators' option_flags instead).
OPTION_SHORTCUTS = (
    OptionShortcut("variant", "pruner_options", "variant", bool, "Wanda's alpha-search variant."),
    OptionShortcut("importance", "pruner_options", "importance", str, "Structured pruner: unit importance entropy | taylor-ce "
                   "| magnitude | wanda-sum (pruner option importance)."),
    OptionShortcut("mlp_ratio", "pruner_options", "mlp_ratio", float, "Structured pruner: kept MLP width / hidden size, "
                   "instead of --sparsity (pruner option mlp_ratio)."),
    OptionShortcut("bits", "quantizer_options", "bits", int, "Quantizer bits per weight (quantizer option bits)."),
    OptionShortcut("group_size", "quantizer_options", "group_size", int, "Input columns per quantization scale, 0 = per "
                   "output channel (quantizer option group_size)."),
)


def _format(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "config"
        msg = "unknown setting" if e["type"] == "extra_forbidden" else e["msg"]
        given = e.get("input")
        if e["type"] != "extra_forbidden" and isinstance(given, (str, int, float, bool)):  # no silent conversion
            msg += f", got {given!r:.60}" + (f" ({type(given).__name__})" if not isinstance(given, str) else " (text)")
        parts.append(f"{loc}: {msg}")
    return "invalid run config: " + "; ".join(parts)


def read_toml(path: str | Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    from ..textio import read_text_file

    p = Path(path)
    text = read_text_file(p, "config file", "pass an existing UTF-8 TOML file", max_bytes=10_000_000)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"config file {str(p)!r} is not valid TOML: {err}") from None
    except (RecursionError, ValueError) as err:  # absurd nesting; an integer longer than Python converts
        raise UserError(f"config file {str(p)!r} cannot be read as a run config ({type(err).__name__}: "
                        f"{str(err).split(';')[0][:120]})") from None


def build_config(config_file: str | None, overrides: dict[str, Any]) -> RunConfig:
    """Defaults <- TOML file <- flags (only flags the user actually gave: not None)."""
    data: dict[str, Any] = read_toml(config_file) if config_file else {}
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            merged = dict(data[key])
            for k, v in value.items():
                merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
            data[key] = merged
        else:
            data[key] = value
    try:
        return RunConfig(**data)
    except ValidationError as err:
        raise UserError(_format(err)) from None


def parse_options(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as JSON when possible (numbers, booleans), else strings."""
    from ..textio import option_value

    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"{flag} {pair!r} must look like key=value")
        key, raw = pair.split("=", 1)
        out[key.strip()] = option_value(raw, f"{flag} {key.strip()}")
    return out
