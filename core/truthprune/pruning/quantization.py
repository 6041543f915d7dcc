"""The quantized-weight format and the engine's quantization step (plugins supply the methods).

Why this lives in core while RTN/GPTQ live in a plugin: the *format* must be one thing that every
quantizer, the engine, the saved checkpoint and a reader agree on, whereas the *methods* are
interchangeable. A :class:`~truthprune.plugin.interfaces.QuantResult` is integer codes on a per-group
affine grid::

    weight[r, c] = (codes[r, c] - zeros[r, g_idx[c]]) * scales[r, g_idx[c]]

The engine writes exactly :func:`dequantize` of the result into the model, so the saved
checkpoint (dequantized weights, loadable by any Hugging Face code) and the sidecar
``quantization.safetensors`` (the codes, scales, zero-points and group index, for inspection or
for packing into an integer kernel format) always agree. The on-disk format is described in
docs/quantization.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..plugin.interfaces import LinearStats, QuantResult, Quantizer
from ..errors import PluginContractError, UserError
from ..models.adapter import decoder_layers
from ..plugin.contracts import violation

if TYPE_CHECKING:  # torch is imported inside the functions: report rendering uses describe_line only
    import torch

SIDECAR = "quantization.safetensors"
FORMAT = "truthprune-quant/1"


def dequantize(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, g_idx: torch.Tensor) -> torch.Tensor:
    """Float32 weights [out, in] from codes [out, in], scales/zeros [out, groups], g_idx [in]."""
    idx = g_idx.long()
    return (codes.float() - zeros.float()[:, idx]) * scales.float()[:, idx]


def check_result(result: QuantResult, weight: torch.Tensor, mask: torch.Tensor, owner: Any) -> torch.Tensor:
    """Validate a quantizer's answer against the contract; return the dequantized weights.

    A violation is a bug in the plugin, not a user error: a PluginContractError naming the
    quantizer ``owner`` (the plugin, or its name), exit code 3 in the CLI.
    """
    import torch

    def broke(problem: str) -> Exception:
        if isinstance(owner, str):
            return PluginContractError(f"quantizer {owner!r} broke the QuantResult contract: {problem}")
        return violation(owner, f"it broke the QuantResult contract: {problem}", kind="quantizer")

    if not isinstance(result, QuantResult) or not all(isinstance(getattr(result, a, None), torch.Tensor)
                                                      for a in ("codes", "scales", "zeros", "g_idx")):
        raise broke(f"quantize() must return a QuantResult of tensors, got {type(result).__name__}")
    out, cols = weight.shape
    r = result
    problems = []
    if r.codes.shape != weight.shape or r.codes.dtype != torch.uint8:
        problems.append(f"codes must be uint8 {list(weight.shape)}, got {r.codes.dtype} {list(r.codes.shape)}")
    if r.g_idx.shape != (cols,):
        problems.append(f"g_idx must have {cols} entries, got {list(r.g_idx.shape)}")
    groups = int(r.g_idx.max().item()) + 1 if r.g_idx.numel() else 0
    for what, t in (("scales", r.scales), ("zeros", r.zeros)):
        if t.dim() != 2 or t.shape[0] != out or t.shape[1] < groups:
            problems.append(f"{what} must be [{out}, groups >= {groups}], got {list(t.shape)}")
    if r.zeros.dtype != torch.uint8:
        problems.append(f"zeros must be uint8 integer zero-points, got {r.zeros.dtype}")
    if not 1 <= r.bits <= 8:
        problems.append(f"bits must be in 1..8, got {r.bits}")
    elif not problems and int(r.codes.max().item()) >= 2 ** r.bits:
        problems.append(f"codes exceed {r.bits} bits")
    if not problems and r.scales.is_floating_point() and not bool(torch.isfinite(r.scales).all()):
        problems.append("scales hold NaN or Inf")
    if problems:
        raise broke("; ".join(problems))
    deq = dequantize(r.codes, r.scales, r.zeros, r.g_idx)
    revived = int((deq[mask.to(deq.device)] != 0).sum().item())
    if revived:
        raise broke(f"it gave {revived} pruned (zero) weights a non-zero value; a masked weight must get its group's "
                    "zero-point as code")
    return deq


Sink = Callable[[str, QuantResult], None]


def quantize_linears(linears: dict[str, Any], stats: dict[str, LinearStats], quantizer: Quantizer,
                     broadcast: Callable[[torch.Tensor], None], sink: Sink | None) -> dict[str, float]:
    """Quantize every (already pruned) linear in place; return each one's relative weight change.

    The mask handed to the quantizer is "exactly zero now": the pruner's zeros (and any zero the
    dense model had), which must stay zero.
    """
    change = {}
    for name, lin in linears.items():
        w = lin.weight.data
        mask = w == 0
        result = quantizer.quantize(w, stats.get(name) or LinearStats(n_tokens=0), mask)
        deq = check_result(result, w, mask, quantizer)
        before = w.float()
        change[name] = float((deq.to(w.device) - before).norm() / before.norm().clamp_min(1e-12))
        w.copy_(deq.to(w.dtype))
        broadcast(w)
        if sink is not None:
            sink(name, result)
    return change


class QuantizedLinears:
    """Collects every linear's QuantResult during a run (CPU copies) for the sidecar file."""

    def __init__(self, quantizer: Quantizer):
        self.description = quantizer.describe()
        self.results: dict[tuple[int, str], QuantResult] = {}

    def sink(self, layer: int) -> Sink:
        import torch

        def add(name: str, r: QuantResult) -> None:
            self.results[(layer, name)] = QuantResult(r.codes.cpu(), r.scales.float().cpu(), r.zeros.cpu(),
                                                      r.g_idx.to(torch.int32).cpu(), int(r.bits))

        return add

    def tensors(self, layers_prefix: str) -> dict[str, torch.Tensor]:
        """Sidecar tensors keyed ``<weight name>.codes|.scales|.zeros|.g_idx``."""
        out = {}
        for (i, name), r in sorted(self.results.items()):
            key = f"{layers_prefix}.{i}.{name}.weight"
            out.update({f"{key}.codes": r.codes, f"{key}.scales": r.scales, f"{key}.zeros": r.zeros, f"{key}.g_idx": r.g_idx})
        return out

    def by_module(self, model: Any) -> dict[str, QuantResult]:
        """The results keyed by module name (``model.layers.0.self_attn.q_proj``)."""
        prefix = layers_prefix(model)
        return {f"{prefix}.{i}.{name}": r for (i, name), r in sorted(self.results.items())}

    def write(self, directory: Path, model: Any) -> dict[str, Any]:
        """Write the sidecar into ``directory``; return the truthprune.json ``quantization`` entry."""
        from safetensors.torch import save_file

        prefix = layers_prefix(model)
        meta = {"format": FORMAT, **{k: json.dumps(v) for k, v in self.description.items()}}
        save_file({k: v.contiguous() for k, v in self.tensors(prefix).items()}, str(Path(directory) / SIDECAR), metadata=meta)
        return {"file": SIDECAR, "format": FORMAT, **self.description, "linears": len(self.results)}


def layers_prefix(model: Any) -> str:
    """The state-dict prefix of the decoder layers (``model.layers`` for Llama)."""
    layers = decoder_layers(model)
    for name, module in model.named_modules():
        if module is layers:
            return name
    raise RuntimeError("the decoder layers are not a submodule of the model")


def load_quantization(path: str | Path) -> tuple[dict[str, QuantResult], dict[str, Any]]:
    """Read a saved sidecar (a checkpoint directory or the file): ({weight name: QuantResult}, metadata)."""
    from safetensors import safe_open

    p = Path(path)
    if p.is_dir():
        p = p / SIDECAR
    if not p.is_file():
        raise UserError(f"{str(p)!r} does not exist; quantization sidecars are written by --quantizer runs with --save")
    with safe_open(str(p), framework="pt") as f:
        raw_meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta = {k: (v if k == "format" else json.loads(v)) for k, v in raw_meta.items()}
    out = {}
    for key in sorted(k[: -len(".codes")] for k in tensors if k.endswith(".codes")):
        out[key] = QuantResult(tensors[f"{key}.codes"], tensors[f"{key}.scales"], tensors[f"{key}.zeros"],
                               tensors[f"{key}.g_idx"], int(meta.get("bits", 8)))
    return out, meta


def describe_line(desc: dict[str, Any] | None) -> str:
    """One line for reports: "gptq 4-bit, group 128, asymmetric (act_order=True, ...)"."""
    if not desc:
        return "-"
    group = desc.get("group_size")
    parts = [f"{desc.get('method', '?')} {desc.get('bits', '?')}-bit"]
    if group is not None:
        parts.append("per channel" if not group else f"group {group}")
    if "symmetric" in desc:
        parts.append("symmetric" if desc["symmetric"] else "asymmetric")
    skip = {"method", "bits", "group_size", "symmetric", "layer_weight_change", "linears", "file", "format"}
    rest = ", ".join(f"{k}={v}" for k, v in desc.items() if k not in skip)
    return ", ".join(parts) + (f" ({rest})" if rest else "")


def short_label(desc: dict[str, Any] | None) -> str:
    """A table cell: "gptq 4-bit g128", "rtn 8-bit per-channel", "-" when not quantized."""
    if not desc:
        return "-"
    group = desc.get("group_size")
    tail = "" if group is None else (" per-channel" if not group else f" g{group}")
    return f"{desc.get('method', '?')} {desc.get('bits', '?')}-bit{tail}"
