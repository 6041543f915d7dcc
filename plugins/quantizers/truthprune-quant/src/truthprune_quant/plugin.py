"""Registration and the thin RTN/GPTQ quantizer classes; the maths is in :mod:`.grid` and
:mod:`.gptq`. No torch import at module level (``truthprune plugins`` imports this module)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from truthprune import STAT_GRAM, PluginConfig, QuantResult, Quantizer, UserError, hookimpl, single_thread


class RtnConfig(PluginConfig):
    bits: int = Field(4, ge=2, le=8)
    """Bits per weight (2..8; 8/4/3/2 are the usual choices)."""
    group_size: int = Field(128, ge=0)
    """Input columns sharing one scale/zero-point per output row; 0 = one per output channel."""
    symmetric: bool = False
    """Symmetric grid around 0 (zero-point 2**(bits-1)) instead of the min/max (asymmetric) one."""


class GptqConfig(RtnConfig):
    percdamp: float = Field(0.01, gt=0.0)
    """Damping added to the Hessian diagonal, as a fraction of its mean."""
    blocksize: int = Field(128, ge=1)
    """Columns per lazy-update block (rounded to a multiple of group_size)."""
    act_order: bool = False
    """Quantize columns in decreasing order of input energy (diag H)."""
    zero_dead: bool = False
    """Set weights of inputs that were always 0 on the calibration data to 0 (the reference's choice)."""
    dtype: Literal["float32", "float64"] = "float32"
    """Precision of the GPTQ arithmetic."""


def _result(q, bits: int) -> QuantResult:
    """The core format (CPU tensors): uint8 codes and zero-points, float32 scales, int32 g_idx."""
    import torch

    return QuantResult(codes=q.codes, scales=q.scales.to(torch.float32), zeros=q.zeros.round().to(torch.uint8),
                       g_idx=q.g_idx, bits=bits)


class RtnQuantizer(Quantizer):
    name = "rtn"
    description = "Round-to-nearest weight quantization, 2-8 bit, per channel or group-wise (group 128), (a)symmetric."
    Config = RtnConfig

    def quantize(self, weight, stats, mask):
        from .grid import rtn_quantize

        c = self.config
        with single_thread():  # small column sweeps: faster on one thread, codes independent of the core count
            q = rtn_quantize(weight.cpu(), mask.cpu(), c.bits, c.group_size, c.symmetric)
        return _result(q, c.bits)


class GptqQuantizer(Quantizer):
    name = "gptq"
    description = "GPTQ: column-wise quantization with inverse-Hessian (OBS) error compensation from calibration inputs."
    Config = GptqConfig
    required_stats = frozenset({STAT_GRAM})

    def quantize(self, weight, stats, mask):
        import torch

        from .gptq import gptq_hessian, gptq_quantize

        if stats.gram is None or not stats.n_tokens:
            raise UserError("gptq needs calibration inputs (the 'gram' statistic) for every linear; the engine gave none")
        c = self.config
        dtype = getattr(torch, c.dtype)
        with single_thread():  # small column sweeps: faster on one thread, codes independent of the core count
            q = gptq_quantize(weight.cpu(), gptq_hessian(stats.gram.cpu(), stats.n_tokens, dtype), mask.cpu(), c.bits,
                              group_size=c.group_size, symmetric=c.symmetric, percdamp=c.percdamp, blocksize=c.blocksize,
                              act_order=c.act_order, zero_dead=c.zero_dead, dtype=dtype)
        return _result(q, c.bits)

    def contiguous_groups(self) -> bool:
        """act-order with groups numbers the groups in activation order, not column order."""
        return not (self.config.act_order and self.config.group_size > 0)


@hookimpl
def register_quantizers(register):
    register(RtnQuantizer)
    register(GptqQuantizer)
