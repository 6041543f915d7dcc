"""Write quantized linears as a compressed-tensors ``pack-quantized`` checkpoint (what transformers and vLLM load).

Why this is in core (an optional extra, ``truthprune[compressed-tensors]``) and not in the quantizer
plugin: it converts core's quantized-weight format (:class:`~truthprune.plugin.interfaces.QuantResult`),
whatever quantizer produced it, exactly as the sidecar writer next to it does.

The mapping is exact, not a re-quantization. truthprune's grid is
``w = (code - zero) * scale`` with ``code``, ``zero`` in ``[0, 2**bits - 1]``; compressed-tensors
stores signed integers ``q`` in ``[-2**(bits-1), 2**(bits-1) - 1]`` and reads back
``(q - zp) * scale``. So ``q = code - 2**(bits-1)`` and ``zp = zero - 2**(bits-1)``; a symmetric
truthprune grid has ``zero = 2**(bits-1)`` in every group, i.e. ``zp = 0``, which is
compressed-tensors' symmetric scheme (no zero-point tensor). The library itself quantizes and packs
(:class:`PackedQuantizationCompressor`): it is handed the exact float32 dequantized weights with
these scales and zero-points, and the packed codes are then checked to equal ours, one by one.

Groups: compressed-tensors' group strategy needs the group size to divide the input width, and
release 0.20 removed its group index (activation-order groups). truthprune's groups are
contiguous runs of ``group_size`` columns with a shorter last group (576 columns at group 128: four of
128 and one of 64), so they are written at the largest group size that splits every run of every
linear (the gcd; 64 for that example), repeating each scale over its sub-groups: the same weights,
more (identical) scales. Permuted groups (GPTQ act-order with groups) cannot be written and are
refused. Scales are stored in float32, as computed: a reader that runs in float32 reproduces
truthprune's weights bit for bit; one that runs in bf16 rounds the scale to bf16 first.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from .quantization import dequantize

if TYPE_CHECKING:
    import torch

    from ..plugin.interfaces import QuantResult

FORMATS = ("safetensors", "compressed-tensors")
CT_FORMAT = "compressed-tensors/pack-quantized"
# the compressed-tensors releases whose pack-quantized layout and compressor API this writer uses and
# that transformers 5.x loads (transformers asks for >= 0.15; 0.15 itself pins torch < 2.11)
CT_REQUIREMENT = "compressed-tensors>=0.16,<0.21"
CT_MIN, CT_BELOW = (0, 16), (0, 21)


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_compressed_tensors(flag: str = "--format compressed-tensors") -> str:
    """The installed compressed-tensors version, or UserError when it is absent or outside the supported range.

    Reads the package metadata only (no import), so it is a cheap plan-time check."""
    from importlib import metadata

    try:
        version = metadata.version("compressed-tensors")
    except metadata.PackageNotFoundError:
        raise UserError(f"{flag} needs the compressed-tensors package; pip install 'truthprune[compressed-tensors]' "
                        f"(i.e. '{CT_REQUIREMENT}')") from None
    if not CT_MIN <= _release(version) < CT_BELOW:
        raise UserError(f"{flag}: compressed-tensors {version} is installed, but truthprune writes the format of "
                        f"{CT_REQUIREMENT} (what transformers loads); pip install '{CT_REQUIREMENT}'")
    return version


@dataclass(frozen=True)
class CtLayout:
    """The one compressed-tensors weight scheme every quantized linear is written with."""

    bits: int
    symmetric: bool
    group_size: int | None  # None: one scale per output channel (strategy "channel")

    @property
    def offset(self) -> int:
        return 1 << (self.bits - 1)

    def args(self) -> dict[str, Any]:
        """compressed-tensors QuantizationArgs fields."""
        strategy = "channel" if self.group_size is None else "group"
        return {"num_bits": self.bits, "type": "int", "symmetric": self.symmetric, "strategy": strategy,
                "group_size": self.group_size}


def run_boundaries(g_idx: torch.Tensor) -> list[int] | None:
    """Start columns of the runs of equal group ids (plus the width), or None when a group id comes back
    after another one (permuted, act-order groups)."""
    import torch

    ids = g_idx.long()
    change = (torch.nonzero(ids[1:] != ids[:-1]).flatten() + 1).tolist()
    starts = [0, *change]
    if len({int(ids[s]) for s in starts}) != len(starts):
        return None
    return [*change, int(ids.numel())]


def ct_layout(results: dict[str, QuantResult]) -> CtLayout:
    """The scheme that represents every result exactly; UserError when there is none."""
    bits = {int(r.bits) for r in results.values()}
    if len(bits) != 1:
        raise UserError(f"the linears are quantized with different bit widths {sorted(bits)}; compressed-tensors export "
                        "writes one scheme: quantize every linear with the same --bits")
    b = bits.pop()
    offset = 1 << (b - 1)
    symmetric = all(bool((r.zeros == offset).all()) for r in results.values())
    group = 0
    grouped = False
    for name, r in results.items():
        bounds = run_boundaries(r.g_idx)
        if bounds is None:
            raise UserError(f"{name} is quantized with permuted (act-order) groups, which compressed-tensors cannot store "
                            "(it has no group index since 0.20); quantize without act_order, or "
                            "with --group-size 0")
        if len(bounds) > 1:
            grouped = True
        for b_ in bounds:
            group = math.gcd(group, b_)
    return CtLayout(b, symmetric, group if grouped else None)


def ct_tensors(r: QuantResult, layout: CtLayout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(exact float32 weight [out, in], scale [out, groups'], zero-point int8 [out, groups']) in the layout."""
    import torch

    cols = r.codes.shape[1]
    width = cols if layout.group_size is None else layout.group_size
    first = r.g_idx.long()[torch.arange(0, cols, width)]  # our group of each compressed-tensors group
    scale = r.scales.float()[:, first].contiguous()
    zero_point = (r.zeros.to(torch.int16)[:, first] - layout.offset).to(torch.int8).contiguous()
    return dequantize(r.codes, r.scales, r.zeros, r.g_idx), scale, zero_point


def scheme(layout: CtLayout):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    return QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(**layout.args()), format="pack-quantized")


def compress_linear(r: QuantResult, layout: CtLayout, ct_scheme: Any, name: str) -> dict[str, torch.Tensor]:
    """The module's compressed tensors (weight_packed, weight_scale, weight_shape[, weight_zero_point]),
    packed by compressed-tensors and checked code for code against ours."""
    import torch
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

    weight, scale, zero_point = ct_tensors(r, layout)
    state = {"weight": weight, "weight_scale": scale}
    if not layout.symmetric:
        state["weight_zero_point"] = zero_point
    out = PackedQuantizationCompressor.compress(state, ct_scheme)
    codes = unpack_from_int32(out["weight_packed"], layout.bits, out["weight_shape"])
    if not torch.equal(codes.to(torch.int16), r.codes.to(torch.int16) - layout.offset):
        raise RuntimeError(f"compressed-tensors packed {name} to other codes than truthprune's; nothing was written")
    return out


def ignored_linears(model: Any, quantized: set[str]) -> list[str]:
    import torch

    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n not in quantized]


def write_compressed_tensors(model: Any, results: dict[str, QuantResult], directory: Path) -> dict[str, Any]:
    """``save_pretrained`` the model into ``directory`` with every linear of ``results`` (keyed by module name)
    in pack-quantized form and ``quantization_config`` in config.json; the model is left as it was.
    Returns the truthprune.json ``quantization`` fields of the format."""
    import compressed_tensors
    import torch
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig

    not_linear = [n for n in results if not isinstance(model.get_submodule(n), torch.nn.Linear)]
    if not_linear:
        raise UserError(f"{not_linear[0]} is not a torch Linear (fused MoE experts?); compressed-tensors export writes "
                        "Linear layers only: save without --format compressed-tensors")
    layout = ct_layout(results)
    ct_scheme = scheme(layout)
    packed = {name: compress_linear(r, layout, ct_scheme, name) for name, r in results.items()}  # all checked first
    ignore = ignored_linears(model, set(results))
    originals = {}
    try:
        for name, tensors in packed.items():
            lin = model.get_submodule(name)
            originals[name] = lin._parameters.pop("weight")
            for key, t in tensors.items():
                lin.register_parameter(key, torch.nn.Parameter(t, requires_grad=False))
        model.save_pretrained(directory, safe_serialization=True)
    finally:
        for name, weight in originals.items():
            lin = model.get_submodule(name)
            for key in packed[name]:
                lin._parameters.pop(key, None)
            lin._parameters["weight"] = weight
    config = QuantizationConfig(config_groups={"group_0": ct_scheme}, format="pack-quantized",
                                quantization_status="compressed", ignore=ignore)
    ModelCompressor(quantization_config=config).update_config(str(directory))
    if not layout.symmetric:
        _dequantize_on_load(Path(directory) / "config.json")
    return {"format": CT_FORMAT, "compressed_tensors": compressed_tensors.__version__,
            "written_group_size": layout.group_size, "written_symmetric": layout.symmetric, "ignore": ignore}


def _dequantize_on_load(config_path: Path) -> None:
    """Asymmetric (zero-point) schemes: ask transformers to dequantize while loading.

    transformers' compressed route rebuilds each module's zero-point unpacked, while the checkpoint
    holds it packed, so an asymmetric pack-quantized model fails to load through it (compressed-tensors
    0.18 to 0.20); the dequantize route reads the packed tensors directly. On a CPU both routes end with
    dense weights anyway (the compressed route decompresses at the first forward)."""
    data = json.loads(config_path.read_text())
    data["quantization_config"]["dequantize"] = True
    config_path.write_text(json.dumps(data, indent=2, sort_keys=True))
