"""Quantizers for truthprune: RTN and GPTQ (see README.md).

The classes import no torch; the pure maths (:mod:`.grid`, :mod:`.gptq`) is public for reuse and
resolved lazily, so ``truthprune plugins`` (which imports this package) stays torch-free.
"""

from importlib import import_module

from .plugin import GptqConfig, GptqQuantizer, RtnConfig, RtnQuantizer

_MATHS = {"gptq_hessian": "gptq", "gptq_quantize": "gptq", "Quantized": "grid", "from_codes": "grid",
          "grid_params": "grid", "group_index": "grid", "rtn_quantize": "grid", "to_codes": "grid"}


def __getattr__(name):
    if name in _MATHS:
        return getattr(import_module(f".{_MATHS[name]}", __name__), name)
    raise AttributeError(f"module 'truthprune_quant' has no attribute {name!r}")


__all__ = ["GptqConfig", "GptqQuantizer", "RtnConfig", "RtnQuantizer", *_MATHS]
