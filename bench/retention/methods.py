"""Method specs (a label and its ``truthprune prune`` flags), plugin availability, the prune command.

A method is pruned exactly as a user would prune it: ``truthprune prune`` in a subprocess with
the method's flags plus the benchmark's fixed calibration, seed and truth-data flags.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass

from truthprune import UserError

DEFAULT_METHODS: dict[str, str] = {
    "magnitude": "--pruner magnitude",
    "wanda": "--pruner wanda",
    "owl": "--pruner owl",
    "tplo": "--pruner tplo",
    "sparsegpt": "--pruner sparsegpt",
    "ours": "--pruner truthaware",
    "ours+tplo": "--pruner truthaware --allocator tplo",
}
# flags the benchmark sets itself (a method may not change the protocol)
RESERVED = {
    "--model", "--sparsity", "--nm", "--save", "--overwrite", "--calibration", "--calibration-opt", "--nsamples",
    "--seqlen", "--seed", "--truth-data", "--truth-datasets", "--truth-max-per-set", "--config", "--quiet", "-q",
    "--device", "--dtype",
}
# finetune flags the benchmark sets itself (model, output, training text, seed, device)
FINETUNE_RESERVED = {"--model", "--save", "--overwrite", "--calibration", "--calibration-opt", "--seed", "--device",
                     "--quiet", "-q", "--eval-data"}
# presets whose default allocator is not uniform (they cannot take --nm)
PRESET_ALLOCATORS = {"owl": "owl", "tplo": "tplo"}


FINETUNE = "+finetune"  # in a method spec: the flags after it go to `truthprune finetune` of the pruned model


@dataclass(frozen=True)
class Method:
    label: str
    flags: tuple[str, ...]
    finetune: tuple[str, ...] | None = None  # LoRA recovery after pruning (the point scores the recovered model)

    @property
    def pruner(self) -> str:
        return _flag_value(self.flags, "--pruner") or "wanda"

    @property
    def allocator(self) -> str | None:
        return _flag_value(self.flags, "--allocator")


def _flag_value(flags: tuple[str, ...], name: str) -> str | None:
    for i, f in enumerate(flags):
        if f == name and i + 1 < len(flags):
            return flags[i + 1]
        if f.startswith(name + "="):
            return f.split("=", 1)[1]
    return None


def parse_method(label: str, spec: str) -> Method:
    """``label`` and a flag string such as ``--pruner truthaware --allocator tplo --pruner-opt k=v``."""
    if not label or any(c in label for c in "/\\ \t") or label.startswith("."):
        raise UserError(f"method label {label!r} must be a non-empty name without spaces or slashes")
    try:
        flags = tuple(shlex.split(spec))
    except ValueError as err:
        raise UserError(f"method {label!r}: cannot parse flags {spec!r} ({err})") from None
    finetune = None
    if FINETUNE in flags:
        cut = flags.index(FINETUNE)
        flags, finetune = flags[:cut], flags[cut + 1:]
        bad = sorted({f.split("=", 1)[0] for f in finetune if f.split("=", 1)[0] in FINETUNE_RESERVED})
        if bad:
            raise UserError(f"method {label!r}: {', '.join(bad)} after {FINETUNE} is set by the benchmark; remove it")
    if not flags or flags[0] != "--pruner" and not flags[0].startswith("--pruner="):
        raise UserError(f"method {label!r}: flags must start with --pruner NAME, e.g. '{label}=--pruner wanda'")
    bad = sorted({f.split("=", 1)[0] for f in flags if f.split("=", 1)[0] in RESERVED})
    if bad:
        raise UserError(f"method {label!r}: {', '.join(bad)} is set by the benchmark for every method; remove it")
    return Method(label, flags, finetune)


def select_methods(names: str | None, custom: list[str]) -> list[Method]:
    """The defaults (or the comma list ``names`` of default and custom labels) plus ``--method`` specs."""
    extra: dict[str, Method] = {}
    for item in custom:
        label, sep, spec = item.partition("=")
        if not sep:
            raise UserError(f"--method {item!r} must look like 'label=--pruner NAME [flags]'")
        extra[label.strip()] = parse_method(label.strip(), spec)
    known = {k: parse_method(k, v) for k, v in DEFAULT_METHODS.items()} | extra
    if names is None:
        return list(known.values())
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(known)} (add one with --method 'label=--pruner X')")
    out = [known[n] for n in dict.fromkeys(chosen)]
    return out + [m for label, m in extra.items() if label not in chosen]


def installed_plugins() -> dict[str, set[str]]:
    """kind -> names, from ``truthprune plugins --json`` (the user's view of what is installed)."""
    proc = subprocess.run(
        [sys.executable, "-m", "truthprune", "plugins", "--json"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise UserError(f"`truthprune plugins --json` failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    out: dict[str, set[str]] = {}
    for row in json.loads(proc.stdout):
        out.setdefault(row["kind"], set()).add(row["name"])
    return out


def missing_plugin(method: Method, plugins: dict[str, set[str]]) -> str | None:
    """Why ``method`` cannot run here (a pruner or allocator that is not installed), else None."""
    if method.pruner not in plugins.get("pruner", set()):
        return f"pruner {method.pruner!r} is not installed"
    if method.allocator and method.allocator not in plugins.get("allocator", set()):
        return f"allocator {method.allocator!r} is not installed"
    return None


def nm_conflict(method: Method, nm: str | None) -> str | None:
    """N:M gives every layer the same pattern: a non-uniform allocator cannot take part."""
    if nm is None:
        return None
    alloc = method.allocator or PRESET_ALLOCATORS.get(method.pruner)
    if alloc and alloc != "uniform":
        return f"--nm {nm} cannot be combined with allocator {alloc!r}"
    return None


def prune_command(method: Method, model: str, setting: dict, save: str, common: list[str]) -> list[str]:
    """The ``truthprune prune`` argv for one point (``setting``: {"sparsity": s} or {"nm": "2:4"})."""
    target = ["--nm", setting["nm"]] if setting.get("nm") else ["--sparsity", str(setting["sparsity"])]
    return [sys.executable, "-m", "truthprune", "prune", "--model", model, *method.flags, *target,
            "--save", save, "--overwrite", *common, "--quiet"]


def finetune_command(method: Method, pruned: str, save: str, common_finetune: list[str]) -> list[str]:
    """The ``truthprune finetune`` argv that recovers a pruned point (``method.finetune`` flags)."""
    return [sys.executable, "-m", "truthprune", "finetune", "--model", pruned, "--save", save, "--overwrite",
            *common_finetune, *(method.finetune or ()), "--quiet"]


__all__ = [
    "finetune_command",
    "Method",
    "DEFAULT_METHODS",
    "parse_method",
    "select_methods",
    "installed_plugins",
    "missing_plugin",
    "nm_conflict",
    "prune_command",
]
