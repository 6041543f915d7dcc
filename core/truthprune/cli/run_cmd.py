"""``truthprune run`` and ``truthprune config show``.

The flags are generated from :class:`truthprune.run.config.RunConfig` (one flag per field, the
field's description as help), so a setting is declared once. Flags override ``--config run.toml``;
only flags the user actually gave take part (typer defaults are None), so the TOML file and the
pydantic defaults stay the single source of defaults.
Boolean settings are ``--x/--no-x`` pairs, so a TOML ``overwrite = true`` can be turned off by
``--no-overwrite`` (and the reverse).
"""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from .app import app
from .options import literal, option_help

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
    from ..textio import option_value

    return option_value(raw, "flag")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _cli_type(annotation: Any) -> Any:
    """The typer annotation of a RunConfig field: Optional (None = not given) of bool, int, float,
    str (Literal choices are validated by pydantic, with the field's name in the error) or list[str]."""
    import types
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _cli_type(args[0])
    if origin is list:
        return Optional[list[str]]
    if origin is typing.Literal:
        return Optional[str]
    return Optional[annotation]


def _param(name: str, annotation: Any, flag: str, help: str, *extra: str, hidden: bool = False) -> Any:
    """A flag whose typer default is None (= not given): the TOML file and RunConfig keep the defaults."""
    import inspect

    decls = [f"{flag}/--no-{flag[2:]}"] if annotation is Optional[bool] else [flag]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=typer.Option(None, *decls, *extra, help=help, hidden=hidden, show_default=False))


def run_flag_params() -> list:
    """The flags of ``run``, generated from RunConfig's fields (their descriptions are the help):
    one flag per field, ``--x/--no-x`` for booleans; a dict of plugin options becomes its shortcut
    flags (config.OPTION_SHORTCUTS, the allocators' option_flags) and a repeatable ``--x-opt``."""
    from ..run.config import OPTION_SHORTCUTS, RunConfig

    params = [_param("config", Optional[str], "--config", literal("TOML file with run settings; flags override it."))]
    for name, field in RunConfig.model_fields.items():
        extra = field.json_schema_extra or {}
        if "cli_flag" in extra:
            params += [_param(s.param, Optional[s.kind], _flag(s.param), literal(s.help)) for s in OPTION_SHORTCUTS if s.field == name]
            if name == "allocator_options":
                params += allocator_flag_params()  # --owl-m, --tplo-pivot, ...: declared by the installed allocators
            params.append(_param(extra["cli_flag"].replace("-", "_"), Optional[list[str]], "--" + extra["cli_flag"],
                                 option_help(field, field.description)))
            continue
        short = (extra["cli_short"],) if "cli_short" in extra else ()
        params.append(_param(name, _cli_type(field.annotation), _flag(name), option_help(field), *short))
    return params


def _overrides(**flags: Any) -> dict[str, Any]:
    """RunConfig overrides from the flags the user gave (None = not given; False counts, so
    --no-overwrite beats a TOML's true)."""
    from ..run.config import OPTION_SHORTCUTS, RunConfig, parse_options

    out: dict[str, Any] = {}
    for name, field in RunConfig.model_fields.items():
        extra = field.json_schema_extra or {}
        if "cli_flag" in extra:
            opts = parse_options(flags.pop(extra["cli_flag"].replace("-", "_"), None), "--" + extra["cli_flag"])
            if name == "calibration_options":  # source.key=value: that source's option only
                nested: dict[str, Any] = {}
                for key, value in opts.items():
                    if "." in key:
                        source, opt = key.split(".", 1)
                        nested.setdefault(source, {})[opt] = value
                    else:
                        nested[key] = value
                opts = nested
            for shortcut in (s for s in OPTION_SHORTCUTS if s.field == name):
                value = flags.pop(shortcut.param, None)
                if value is not None:
                    opts[shortcut.option] = value
            if name == "allocator_options":
                for param, (_, option) in allocator_flags().items():
                    value = flags.pop(param, None)
                    if value is not None:
                        opts[option] = flag_value(value)
            if opts:
                out[name] = opts
        elif extra.get("cli_split") and flags.get(name) is not None:
            flags[name] = [x.strip() for item in flags[name] for x in item.split(",") if x.strip()]
    out.update({k: v for k, v in flags.items() if v is not None})  # False too: --no-overwrite beats a TOML's true
    return out


def _run_options(func):
    """The flags of `run` (and `config show`; prune and sweep take theirs from here), generated
    from RunConfig by :func:`run_flag_params`."""
    import functools
    import inspect

    @functools.wraps(func)
    def wrapper(**kwargs):
        return func(**kwargs)

    wrapper.__signature__ = inspect.Signature(run_flag_params())
    return wrapper


def effective_config(flags: dict[str, Any]):
    from ..run.config import build_config

    from ..outputs.atomic import declare_inputs

    config_file = flags.pop("config")
    declare_inputs([("--config", config_file)])  # no output of this command may replace it
    return build_config(config_file, _overrides(**flags))


def dry_run_param() -> Any:
    import inspect

    return inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                             default=typer.Option(False, "--dry-run", help="Check everything and print the plan (stages, "
                                                  "model, data, outputs, estimated time), then exit without loading "
                                                  "a model.", show_default=False))


def with_dry_run(func):
    """Add ``--dry-run`` to a command whose flags come from :func:`_run_options`."""
    import inspect

    sig = inspect.signature(func)
    func.__signature__ = sig.replace(parameters=[*sig.parameters.values(), dry_run_param()])
    return func


def print_plan(plan: Any, title: str) -> None:
    """``--dry-run``: the resolved plan on stdout (nothing was loaded, locked or written)."""
    from ..run.pipeline import planned_stages
    from ..run.plan_text import plan_lines

    typer.echo(title)
    for line in plan_lines(plan, planned_stages(plan)):
        typer.echo(line)


@app.command("run")
@with_dry_run
@_run_options
def run_command(**flags: Any) -> None:
    """Prune a model and report what it did to perplexity, TruthfulQA and truth probes."""
    from ..reporting.report import head_of_report
    from ..run.pipeline import execute, plan_run

    dry_run = flags.pop("dry_run")
    cfg = effective_config(flags)
    plan = plan_run(cfg, dry_run=dry_run)
    if dry_run:
        print_plan(plan, f"truthprune run: plan (dry run: nothing loaded or written; {cfg.out} would hold the report)")
        return
    out = execute(plan).out
    typer.echo(head_of_report((out / "report.md").read_text()))
    typer.echo(f"full report: {out}/report.md")


@config_app.command("show")
@_run_options
def config_show(**flags: Any) -> None:
    """Print the effective, validated run configuration as JSON, with every default resolved."""
    from ..plugin.registry import get_registry
    from ..run.checks import check_calibration_options
    from ..run.stages import ppl_windows

    cfg = effective_config(flags)
    check_calibration_options(cfg)
    data = cfg.model_dump()
    pruner = get_registry().create("pruner", cfg.pruner, cfg.pruner_options)
    data["allocator"] = cfg.allocator or pruner.default_allocator  # what the run will use, not "null"
    data["ppl_max_windows"] = ppl_windows(cfg)  # null: every window of the text
    typer.echo(json.dumps(data, indent=2))
