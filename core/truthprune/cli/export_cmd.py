"""``truthprune export MODEL --format compressed-tensors --out DIR``: convert a quantized truthprune checkpoint.

A checkpoint saved with ``--quantizer`` holds dequantized weights plus the sidecar
``quantization.safetensors`` (codes, scales, zero-points). Export writes the same quantized model in
a format serving stacks load (:mod:`truthprune.pruning.ct_export`), without re-quantizing: the
codes are the sidecar's. Every check (input, format, installed compressed-tensors, groups, output)
runs before the model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import app


def _plan(model: str, fmt: str, out: Optional[str], overwrite: bool):
    from ..errors import UserError
    from ..pruning.ct_export import FORMATS, check_compressed_tensors, ct_layout
    from ..pruning.quantization import SIDECAR, load_quantization
    from ..outputs.atomic import check_target

    targets = [f for f in FORMATS if f != "safetensors"]
    if fmt not in targets:
        raise UserError(f"unknown --format {fmt!r}; export writes {', '.join(targets)}")
    if not out:
        raise UserError("truthprune export needs --out DIR (where the converted checkpoint is written)")
    src = Path(model)
    if not src.is_dir():
        raise UserError(f"{model!r} is not a checkpoint directory; export converts a directory written by "
                        "truthprune prune/run --quantizer ... --save DIR")
    meta_path = src / "truthprune.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except ValueError as err:
        raise UserError(f"{str(meta_path)!r} is not valid JSON ({err}); re-save the checkpoint") from None
    quant = meta.get("quantization")
    if not quant or not (src / SIDECAR).is_file():
        why = "it is already compressed-tensors" if str((quant or {}).get("format", "")).startswith("compressed-tensors") \
            else "it is not quantized (no quantization sidecar)"
        raise UserError(f"cannot export {model!r}: {why}; export converts a checkpoint saved with --quantizer, e.g. "
                        f"truthprune prune --model {model} --pruner magnitude --sparsity 0 --quantizer gptq --bits 4 --save Q")
    check_compressed_tensors()
    results, _ = load_quantization(src)
    modules = {k[: -len(".weight")]: r for k, r in results.items()}
    layout = ct_layout(modules)  # permuted groups, mixed bits: refused here, before the model loads
    if Path(out).resolve() == src.resolve():
        raise UserError("--out is the input checkpoint; export writes a new directory, choose another --out")
    from ..models.spec import model_input_paths
    from ..outputs.atomic import declare_inputs

    declare_inputs(model_input_paths(model))  # --out may not be, contain or lie inside the input (links resolved)
    check_target(out, overwrite, what="--out")
    return src, meta, modules, layout


@app.command("export")
def export_command(
    model: str = typer.Argument(..., help="A quantized truthprune checkpoint directory (saved with --quantizer)."),
    fmt: str = typer.Option("compressed-tensors", "--format", help="Output format: compressed-tensors (pack-quantized)."),
    out: Optional[str] = typer.Option(None, "--out", help="Directory for the converted checkpoint (written atomically)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out directory."),
) -> None:
    """Convert a quantized truthprune checkpoint into a format serving stacks load (compressed-tensors)."""
    src, meta, modules, layout = _plan(model, fmt, out, overwrite)

    from ..models.loading import load_model
    from ..pruning.ct_export import write_compressed_tensors
    from ..outputs.atomic import atomic_dir
    from ..environment import environment_versions

    loaded = load_model(str(src), device="cpu", dtype="auto")
    with atomic_dir(out, overwrite=overwrite, what="--out", kind="export") as tmp:
        written = write_compressed_tensors(loaded.model, modules, tmp)
        loaded.tokenizer.save_pretrained(tmp)
        quant = {k: v for k, v in meta["quantization"].items() if k not in ("file",)}
        record = {**meta, "versions": environment_versions(), "exported_from": str(src.resolve()),
                  "quantization": {**quant, **written}}
        (tmp / "truthprune.json").write_text(json.dumps(record, indent=2, default=str))
    size = sum(f.stat().st_size for f in Path(out).iterdir() if f.is_file())
    group = "per channel" if layout.group_size is None else f"group {layout.group_size}"
    typer.echo(f"exported {len(modules)} linears as {layout.bits}-bit {group} "
               f"{'symmetric' if layout.symmetric else 'asymmetric'} pack-quantized to {Path(out).resolve()} "
               f"({size / 1e6:.1f} MB)")
