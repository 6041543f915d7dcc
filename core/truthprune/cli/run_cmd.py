"""``truthprune run`` and ``truthprune config show``.

Flags override ``--config run.toml``; only flags the user actually gave take part (typer
defaults are None), so the TOML file and the pydantic defaults stay the single source of defaults.
Boolean settings are ``--x/--no-x`` pairs, so a TOML ``overwrite = true`` can be turned off by
``--no-overwrite`` (and the reverse).
"""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from .main import app

config_app = typer.Typer(help="Inspect the effective run configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def allocator_flags() -> dict[str, tuple[str, str]]:
    """Parameter name (``owl_m``) -> (flag ``owl-m``, allocator option ``m``), from every installed
    allocator's ``option_flags`` (core names none of them)."""
    from ..plugin.registry import get_registry

    return {flag.replace("-", "_"): (flag, field) for flag, (field, _) in get_registry().allocator_flags().items()}


def allocator_flag_params() -> list:
    """The typer parameters of :func:`allocator_flags`, with the help the allocator declared."""
    import inspect

    from ..plugin.registry import get_registry

    return [
        inspect.Parameter(flag.replace("-", "_"), inspect.Parameter.KEYWORD_ONLY,
                          default=typer.Option(None, f"--{flag}", help=text),
                          annotation=Optional[str])
        for flag, (field, text) in get_registry().allocator_flags().items()
    ]


def flag_value(raw: str) -> Any:
    """A shortcut flag's value as --allocator-opt parses it: JSON when possible, else the string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _overrides(**flags: Any) -> dict[str, Any]:
    from ..run.config import parse_options

    out: dict[str, Any] = {}
    alloc = parse_options(flags.pop("allocator_opt"), "--allocator-opt")
    for param, (_, option) in allocator_flags().items():
        value = flags.pop(param, None)
        if value is not None:
            alloc[option] = flag_value(value)
    if alloc:
        out["allocator_options"] = alloc
    quant = parse_options(flags.pop("quantizer_opt"), "--quantizer-opt")
    for flag, option in (("bits", "bits"), ("group_size", "group_size")):
        value = flags.pop(flag)
        if value is not None:
            quant[option] = value
    if quant:
        out["quantizer_options"] = quant
    pruner = parse_options(flags.pop("pruner_opt"), "--pruner-opt")
    variant = flags.pop("variant")
    if variant is not None:
        pruner["variant"] = variant
    for flag in ("importance", "mlp_ratio"):  # structured pruner options as flags
        value = flags.pop(flag)
        if value is not None:
            pruner[flag] = value
    if pruner:
        out["pruner_options"] = pruner
    probe = parse_options(flags.pop("probe_opt"), "--probe-opt")
    if probe:
        out["probe_options"] = probe
    calib: dict[str, Any] = {}
    for key, value in parse_options(flags.pop("calibration_opt"), "--calibration-opt").items():
        if "." in key:
            source, opt = key.split(".", 1)
            calib.setdefault(source, {})[opt] = value
        else:
            calib[key] = value
    if calib:
        out["calibration_options"] = calib
    for key in ("calibration", "eval", "truth_datasets", "lm_eval_tasks", "targets", "ignore"):
        if flags.get(key) is not None:
            flags[key] = [x.strip() for item in flags[key] for x in item.split(",") if x.strip()]
    out.update({k: v for k, v in flags.items() if v is not None})  # False too: --no-overwrite beats a TOML's true
    return out


def _run_options(func):
    """Shared flags of `run` and `config show`, declared once."""
    import functools
    import inspect

    @functools.wraps(func)
    def wrapper(**kwargs):
        return func(**kwargs)

    params = [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--config", help="TOML file with run settings; flags override it."), annotation=Optional[str]),
        inspect.Parameter("model", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, help="smollm2-135m (default, embedded), a model dir, a .gguf file or a hub id."), annotation=Optional[str]),
        inspect.Parameter("device", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, help="auto | cpu | cuda | cuda:N"), annotation=Optional[str]),
        inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, help="auto | float32 | bfloat16 | float16"), annotation=Optional[str]),
        inspect.Parameter("trust_remote_code", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--trust-remote-code/--no-trust-remote-code", help="Allow custom model code from the hub."), annotation=Optional[bool]),
        inspect.Parameter("pruner", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, help="Pruner name (see `truthprune plugins`): wanda, magnitude, owl, tplo, ..."), annotation=Optional[str]),
        inspect.Parameter("allocator", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, help="Per-layer sparsity allocator; default: the pruner's own (uniform for wanda)."), annotation=Optional[str]),
        inspect.Parameter("sparsity", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, help="Target fraction of weights removed, in [0, 1)."), annotation=Optional[float]),
        inspect.Parameter("nm", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--nm", help="N:M pattern, e.g. 2:4 (prune 2 of every 4)."), annotation=Optional[str]),
        inspect.Parameter("variant", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--variant/--no-variant", help="Wanda's alpha-search variant."), annotation=Optional[bool]),
        inspect.Parameter("importance", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--importance", help="Structured pruner: unit importance entropy | taylor-ce | magnitude | wanda-sum (pruner option importance)."), annotation=Optional[str]),
        inspect.Parameter("mlp_ratio", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--mlp-ratio", help="Structured pruner: kept MLP width / hidden size, instead of --sparsity (pruner option mlp_ratio)."), annotation=Optional[float]),
        *allocator_flag_params(),  # --owl-m, --tplo-pivot, ...: declared by the installed allocators
        inspect.Parameter("pruner_opt", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--pruner-opt", help="Pruner option key=value (repeatable)."), annotation=Optional[list[str]]),
        inspect.Parameter("allocator_opt", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--allocator-opt", help="Allocator option key=value (repeatable)."), annotation=Optional[list[str]]),
        inspect.Parameter("quantizer", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--quantizer", help="Quantize each linear after pruning it (rtn, gptq: pip install truthprune-quant); --sparsity 0 quantizes only."), annotation=Optional[str]),
        inspect.Parameter("bits", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--bits", help="Quantizer bits per weight (quantizer option bits)."), annotation=Optional[int]),
        inspect.Parameter("group_size", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--group-size", help="Input columns per quantization scale, 0 = per output channel (quantizer option group_size)."), annotation=Optional[int]),
        inspect.Parameter("quantizer_opt", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--quantizer-opt", help="Quantizer option key=value (repeatable)."), annotation=Optional[list[str]]),
        inspect.Parameter("calibration", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--calibration", help="Calibration source(s), comma-separated or repeated; nsamples split evenly."), annotation=Optional[list[str]]),
        inspect.Parameter("calibration_opt", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--calibration-opt", help="Source option key=value or source.key=value (repeatable)."), annotation=Optional[list[str]]),
        inspect.Parameter("nsamples", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, help="Calibration samples."), annotation=Optional[int]),
        inspect.Parameter("seqlen", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, help="Tokens per calibration sample and perplexity window."), annotation=Optional[int]),
        inspect.Parameter("batch_size", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--batch-size", help="Samples per mini-batch through a layer."), annotation=Optional[int]),
        inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, help="Seed for calibration sampling and probes."), annotation=Optional[int]),
        inspect.Parameter("eval", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--eval", help="Evaluations: ppl,probe,truthfulqa,truthfulness."), annotation=Optional[list[str]]),
        inspect.Parameter("ppl_data", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--ppl-data", help="pydoc (offline default) | wikitext2 (hub) | path to a .txt file."), annotation=Optional[str]),
        inspect.Parameter("ppl_max_windows", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--ppl-max-windows", help="Score only the first N perplexity windows (default: all; the offline pydoc text: 32)."), annotation=Optional[int]),
        inspect.Parameter("truthfulqa_data", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--truthfulqa-data", help="TruthfulQA.csv path (default: the hub)."), annotation=Optional[str]),
        inspect.Parameter("truthfulqa_limit", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--truthfulqa-limit", help="Evaluate only the first N held-out questions."), annotation=Optional[int]),
        inspect.Parameter("truthfulness_limit", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--truthfulness-limit", help="--eval truthfulness: items per dimension (default 200)."), annotation=Optional[int]),
        inspect.Parameter("lm_eval_tasks", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--lm-eval-tasks", help="lm-eval harness tasks, comma-separated (needs pip install 'truthprune[lmeval]')."), annotation=Optional[list[str]]),
        inspect.Parameter("lm_eval_limit", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--lm-eval-limit", help="Evaluate only the first N examples of each lm-eval task."), annotation=Optional[int]),
        inspect.Parameter("lm_eval_fewshot", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--lm-eval-fewshot", help="Few-shot examples per lm-eval task (default: each task's own)."), annotation=Optional[int]),
        inspect.Parameter("lm_eval_include", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--lm-eval-include", help="Directory of your own lm-eval task YAML files (repeatable)."), annotation=Optional[list[str]]),
        inspect.Parameter("probe", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, help="Probe for the lie-detection evaluation (logreg, ttpd, mass-mean, ccs)."), annotation=Optional[str]),
        inspect.Parameter("probe_opt", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--probe-opt", help="Probe option key=value (repeatable)."), annotation=Optional[list[str]]),
        inspect.Parameter("truth_data", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--truth-data", help="Directory of true/false statement CSVs (default: generated offline sets)."), annotation=Optional[str]),
        inspect.Parameter("truth_datasets", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--truth-datasets", help="Which statement sets to use, comma-separated."), annotation=Optional[list[str]]),
        inspect.Parameter("chat_template", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--chat-template/--no-chat-template", help="Wrap statements in the chat template."), annotation=Optional[bool]),
        inspect.Parameter("bos", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--bos", help="auto | always | never: start every window/statement with BOS (auto: when the tokenizer or chat template adds one; docs/models.md)."), annotation=Optional[str]),
        inspect.Parameter("targets", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--targets", help="Weights to prune, module patterns inside a decoder block (comma-separated; default '*')."), annotation=Optional[list[str]]),
        inspect.Parameter("ignore", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--ignore", help="Weights never pruned, module patterns (default: MoE routers and shared-expert gates; docs/models.md)."), annotation=Optional[list[str]]),
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--out", help="Report directory (default runs/latest)."), annotation=Optional[str]),
        inspect.Parameter("save", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--save", help="Also save the pruned model (safetensors) here."), annotation=Optional[str]),
        inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--overwrite/--no-overwrite", help="Replace existing --out/--save directories."), annotation=Optional[bool]),
        inspect.Parameter("wait", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--wait/--no-wait", help="If another process is writing the same --out/--save, wait for it instead of failing."), annotation=Optional[bool]),
        inspect.Parameter("allow_pickle", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--allow-pickle/--no-allow-pickle", help="Accept a pickle-only (.bin) checkpoint; pickles can run code, so only for files you trust."), annotation=Optional[bool]),
        inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, "--quiet/--no-quiet", "-q", help="No progress bars."), annotation=Optional[bool]),
    ]
    wrapper.__signature__ = inspect.Signature(params)
    return wrapper


def effective_config(flags: dict[str, Any]):
    from ..run.config import build_config

    config_file = flags.pop("config")
    return build_config(config_file, _overrides(**flags))


@app.command("run")
@_run_options
def run_command(**flags: Any) -> None:
    """Prune a model and report what it did to perplexity, TruthfulQA and truth probes."""
    import logging

    from ..run.pipeline import execute, plan_run

    cfg = effective_config(flags)
    if not cfg.quiet:
        logging.getLogger("truthprune").setLevel(min(logging.getLogger("truthprune").level or logging.INFO, logging.INFO))
    plan = plan_run(cfg)
    out = execute(plan).out
    typer.echo((out / "report.md").read_text())
    typer.echo(f"report written to {out}/report.md")


@config_app.command("show")
@_run_options
def config_show(**flags: Any) -> None:
    """Print the effective, validated run configuration as JSON."""
    from ..run.checks import check_calibration_options

    cfg = effective_config(flags)
    check_calibration_options(cfg)
    typer.echo(json.dumps(cfg.model_dump(), indent=2))
