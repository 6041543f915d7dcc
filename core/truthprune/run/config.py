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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import UserError
from ..models.adapter import DEFAULT_IGNORE, DEFAULT_TARGETS

EVALS = ("ppl", "probe", "truthfulqa", "truthfulness")


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False

    pruner: str = "wanda"
    allocator: str | None = None  # None: the pruner's default (uniform, or owl/tplo for presets)
    sparsity: float = Field(0.5, ge=0.0, lt=1.0)
    nm: str | None = None  # "2:4" = prune 2 of every 4
    pruner_options: dict[str, Any] = Field(default_factory=dict)
    allocator_options: dict[str, Any] = Field(default_factory=dict)
    quantizer: str | None = None  # quantize every linear right after pruning it (truthprune-quant: rtn, gptq)
    quantizer_options: dict[str, Any] = Field(default_factory=dict)  # --bits/--group-size land here

    calibration: list[str] = Field(default_factory=lambda: ["pydoc"])
    calibration_options: dict[str, Any] = Field(default_factory=dict)  # key=value for all sources, or {source: {key: value}}
    nsamples: int = Field(32, ge=1)
    seqlen: int = Field(512, ge=8)
    batch_size: int = Field(8, ge=1)
    seed: int = 0

    eval: list[str] = Field(default_factory=lambda: ["ppl", "probe"])
    ppl_data: str = "pydoc"
    ppl_max_windows: int | None = Field(None, ge=1)  # None: every window (pydoc: first 32, eval.perplexity.DEFAULT_MAX_WINDOWS)
    truthfulqa_data: str | None = None
    truthfulqa_limit: int | None = Field(None, ge=1)
    truthfulness_limit: int = Field(200, ge=2)  # --eval truthfulness: items per dimension (balanced, seeded sample)
    lm_eval_tasks: list[str] = Field(default_factory=list)  # lm-eval harness tasks (needs truthprune[lmeval])
    lm_eval_limit: int | None = Field(None, ge=1)  # examples per task (quick runs; lm-eval's --limit)
    lm_eval_fewshot: int | None = Field(None, ge=0)  # None: each task's own default
    lm_eval_include: list[str] = Field(default_factory=list)  # extra directories of task YAML files
    probe: str = "logreg"
    probe_options: dict[str, Any] = Field(default_factory=dict)
    truth_data: str | None = None  # directory of Truth-is-Universal CSVs; None: generated offline sets
    truth_datasets: list[str] | None = None
    chat_template: bool = False
    bos: Literal["auto", "always", "never"] = "auto"  # BOS at the start of every window/statement (truthprune.models.bos)
    targets: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS))  # pruned weights: module patterns
    ignore: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORE))  # never pruned (routers, gates)

    out: str = "runs/latest"
    save: str | None = None
    overwrite: bool = False
    wait: bool = False  # queue behind another process writing the same --out/--save (docs/reliability.md)
    allow_pickle: bool = False  # accept pickle-only (.bin) checkpoints; safetensors only otherwise
    quiet: bool = False

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


def _format(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "config"
        msg = "unknown setting" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{loc}: {msg}")
    return "invalid run config: " + "; ".join(parts)


def read_toml(path: str | Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    from ..textio import read_text_file

    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {str(p)!r} does not exist")
    try:
        return tomllib.loads(read_text_file(p, "config file", "pass an existing UTF-8 TOML file", max_bytes=10_000_000))
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"config file {str(p)!r} is not valid TOML: {err}") from None


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
    import json

    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"{flag} {pair!r} must look like key=value")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out
