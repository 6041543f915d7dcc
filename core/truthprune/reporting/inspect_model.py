"""What a saved checkpoint really holds: per-layer sparsity, N:M validity, quantization scheme, file size.

Why it reads tensors straight from the safetensors files instead of loading the model: the answer must
not depend on a loader (a compressed-tensors checkpoint would be dequantized by transformers), it works
for any size (one tensor in memory at a time), and it checks exactly what another tool will read.

A weight counts as zero when it reads back as exactly 0: a plain weight equal to 0, a packed
compressed-tensors code equal to its group's zero-point. The expected pattern comes from the
checkpoint's ``truthprune.json`` (per-layer sparsity, per-linear sparsity, the N:M pattern). Quantization
can add zeros (a small weight rounded to the zero-point), so after quantization only *fewer* zeros than
recorded is a lost mask; without quantization any difference is reported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..pruning.ct_export import check_compressed_tensors
from ..pruning.quantization import describe_line

_LINEAR = re.compile(r"^(?P<prefix>.*\.layers)\.(?P<layer>\d+)\.(?P<name>.+)\.(?P<kind>weight|weight_packed)$")
TOLERANCE = 1e-6  # recorded fractions are float sums of exact counts


def nm_valid(weight_is_zero: Any, n: int, m: int) -> bool:
    """Every block of ``m`` consecutive inputs in every row has at least ``n`` zeros (``[out, in]`` bool)."""
    rows, cols = weight_is_zero.shape
    if cols % m:
        return False
    return bool((weight_is_zero.reshape(rows, cols // m, m).sum(dim=2) >= n).all())


def _files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [path / s for s in shards]
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    raise UserError(f"{str(path)!r} has no model.safetensors (or sharded index); inspect reads safetensors checkpoints")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as err:
        raise UserError(f"{str(path)!r} is not valid JSON ({err}); fix or remove it") from None


def ct_scheme(config: dict[str, Any]) -> dict[str, Any] | None:
    """The (single) weight scheme of a compressed-tensors ``quantization_config``, or None."""
    q = config.get("quantization_config") or {}
    if q.get("quant_method") != "compressed-tensors":
        return None
    groups = list((q.get("config_groups") or {}).values())
    if len(groups) != 1 or not groups[0].get("weights"):
        raise UserError("inspect reads compressed-tensors checkpoints with one weight scheme (what truthprune writes); "
                        f"this one has {len(groups)} config groups")
    w = groups[0]["weights"]
    return {"format": q.get("format"), "version": q.get("version"), "bits": w["num_bits"], "group_size": w.get("group_size"),
            "strategy": w.get("strategy"), "symmetric": w.get("symmetric", True), "ignore": q.get("ignore") or []}


def _zero_mask(f, key: str, kind: str, scheme: dict[str, Any] | None):
    """Bool [out, in]: the weights that read back as exactly 0."""
    import torch

    if kind == "weight":
        return f.get_tensor(key) == 0
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

    base = key[: -len("_packed")]
    shape = f.get_tensor(f"{base}_shape")
    codes = unpack_from_int32(f.get_tensor(key), scheme["bits"], shape)
    if scheme["symmetric"]:
        return codes == 0
    zp_packed = f.get_tensor(f"{base}_zero_point")
    groups = f.get_tensor(f"{base}_scale").shape[-1]
    zp = unpack_from_int32(zp_packed, scheme["bits"], torch.Size([int(shape[0]), groups]), packed_dim=0)
    width = int(shape[1]) // groups
    return codes == zp.repeat_interleave(width, dim=1)


def measure(path: Path, scheme: dict[str, Any] | None, pattern: tuple[int, int]) -> dict[int, dict[str, tuple[int, int, bool]]]:
    """{layer: {linear name: (zeros, numel, N:M pattern holds)}} of every 2-D decoder-layer weight."""
    from safetensors import safe_open

    out: dict[int, dict[str, tuple[int, int, bool]]] = {}
    for file in _files(path):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                hit = _LINEAR.match(key)
                if not hit:
                    continue
                if hit["kind"] == "weight" and len(f.get_slice(key).get_shape()) != 2:
                    continue
                zero = _zero_mask(f, key, hit["kind"], scheme)
                out.setdefault(int(hit["layer"]), {})[hit["name"]] = (int(zero.sum()), zero.numel(), nm_valid(zero, *pattern))
    return out


def _recorded(meta: dict[str, Any]) -> tuple[list[float] | None, dict[int, dict[str, float]], tuple[int, int] | None]:
    layers = (meta.get("pruning") or {}).get("layers") or []
    per_linear = {int(la["index"]): dict(la.get("linears") or {}) for la in layers if "index" in la}
    nm = (meta.get("config") or {}).get("nm")
    pattern = tuple(int(x) for x in nm.split(":")) if nm else None
    return meta.get("per_layer_sparsity"), per_linear, pattern


def inspect_checkpoint(path: str | Path) -> dict[str, Any]:
    """Everything ``truthprune inspect`` prints, as a dict (``warnings``: what does not match truthprune.json)."""
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{str(p)!r} is not a checkpoint directory; pass a directory written by --save (or any "
                        "safetensors model directory)")
    config = _read_json(p / "config.json")
    meta = _read_json(p / "truthprune.json")
    scheme = ct_scheme(config)
    if scheme is not None:
        check_compressed_tensors("inspect of a compressed-tensors checkpoint")
    quant = meta.get("quantization")
    # quantized now, or fine-tuned from a quantized model: weights rounded to 0 are zeros beyond the record
    quantized = scheme is not None or bool(quant) or bool(meta.get("sparsity_source_quantized"))
    recorded_layers, recorded_linears, pattern = _recorded(meta)
    checked = pattern or (2, 4)
    measured = measure(p, scheme, checked)
    warnings: list[str] = []
    layers = []
    zeros_all = total_all = 0
    for i in sorted(measured):
        names = [n for n in (recorded_linears.get(i) or measured[i]) if n in measured[i]]
        zeros = sum(measured[i][n][0] for n in names)
        total = sum(measured[i][n][1] for n in names)
        zeros_all, total_all = zeros_all + zeros, total_all + total
        row = {"index": i, "sparsity": zeros / total if total else 0.0, "linears": len(names)}
        if recorded_layers is not None and i < len(recorded_layers):
            row["recorded"] = float(recorded_layers[i])
            diff = row["sparsity"] - row["recorded"]
            if diff < -TOLERANCE or (not quantized and diff > TOLERANCE):
                warnings.append(f"layer {i}: {row['sparsity']:.4f} of the weights are zero, truthprune.json records "
                                f"{row['recorded']:.4f}" + (": pruned weights were filled in" if diff < 0 else ""))
        for n in names:
            want = (recorded_linears.get(i) or {}).get(n)
            have = measured[i][n][0] / measured[i][n][1]
            if want is not None and have < want - TOLERANCE:
                warnings.append(f"layer {i} {n}: {have:.4f} zeros, {want:.4f} recorded: pruned weights were filled in")
        row["nm_valid"] = all(measured[i][n][2] for n in names)
        if pattern and not row["nm_valid"]:
            warnings.append(f"layer {i}: the {pattern[0]}:{pattern[1]} pattern recorded in truthprune.json does not hold")
        layers.append(row)
    files = sorted(f for f in p.iterdir() if f.is_file())
    return {
        "path": str(p.resolve()),
        "format": "compressed-tensors" if scheme else ("safetensors + truthprune quantization sidecar" if quant else "safetensors"),
        "quantization": scheme or ({k: v for k, v in quant.items() if k not in ("layer_weight_change",)} if quant else None),
        "nm_checked": f"{checked[0]}:{checked[1]}",
        "nm_recorded": bool(pattern),
        "layers": layers,
        "overall_sparsity": zeros_all / total_all if total_all else 0.0,
        "recorded_overall": meta.get("overall_sparsity"),
        "files": {f.name: f.stat().st_size for f in files},
        "size_bytes": sum(f.stat().st_size for f in files),
        "warnings": warnings,
    }


def render(info: dict[str, Any]) -> list[str]:
    """The lines ``truthprune inspect`` prints."""
    q = info["quantization"]
    if q and info["format"] == "compressed-tensors":
        group = "per channel" if q["group_size"] in (None, -1) else f"group {q['group_size']}"
        qline = (f"{q['bits']}-bit int, {group}, {'symmetric' if q['symmetric'] else 'asymmetric'} "
                 f"({q['format']}, compressed-tensors {q['version']}; not quantized: {', '.join(q['ignore']) or '-'})")
    elif q:
        qline = describe_line(q)
    else:
        qline = "none"
    nm_rows = [r for r in info["layers"] if r["nm_valid"]]
    recorded = info["recorded_overall"]
    lines = [
        f"model: {info['path']}",
        f"format: {info['format']}; {len(info['files'])} files, {info['size_bytes'] / 1e6:.1f} MB",
        f"quantization: {qline}",
        f"zeros: {info['overall_sparsity']:.4f} of the pruned linears' weights"
        + (f" (truthprune.json records {recorded:.4f})" if recorded is not None else ""),
        f"{info['nm_checked']} pattern{' (recorded)' if info['nm_recorded'] else ''}: holds in {len(nm_rows)} of "
        f"{len(info['layers'])} layers",
        "per-layer zeros (measured / recorded):",
    ]
    cells = [f"{r['index']:>3}: {r['sparsity']:.3f}" + (f"/{r['recorded']:.3f}" if "recorded" in r else "") for r in info["layers"]]
    lines += ["  " + "  ".join(cells[i:i + 6]) for i in range(0, len(cells), 6)]
    return lines
