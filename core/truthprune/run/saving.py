"""Save a pruned model as a standard ``save_pretrained`` safetensors checkpoint.

Same config and vocabulary as the input (zeros stay in place; nothing is resized), plus
``truthprune.json`` with the run config, versions, per-layer sparsities and seed. Written through
:func:`truthprune.outputs.atomic.atomic_dir`, so an interrupted save leaves nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..environment import environment_versions
from ..outputs.atomic import atomic_dir
from ..errors import UserError
from ..pruning.ct_export import write_compressed_tensors


def first_non_finite(model: Any) -> str | None:
    """The name of the first floating-point parameter or buffer holding NaN or Inf (None: all finite)."""
    import torch

    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and t.device.type != "meta" and not bool(torch.isfinite(t).all()):
                return name
    return None


def check_finite_weights(model: Any, out_dir: str | Path) -> None:
    """Refuse to save NaN/Inf weights: a checkpoint that evaluates to NaN is no result."""
    bad = first_non_finite(model)
    if bad is not None:
        raise UserError(f"the model to be saved to {str(out_dir)!r} has non-finite weights (NaN or Inf, first in {bad}); "
                        "nothing was saved")


def save_pruned(model: Any, tokenizer: Any, out_dir: str | Path, metadata: dict[str, Any], overwrite: bool = False,
                quantization: Any = None, kind: str = "prune", what: str = "--save", fmt: str = "safetensors") -> Path:
    """Write model + tokenizer + truthprune.json to ``out_dir`` atomically; return the path.

    ``quantization`` (a :class:`truthprune.pruning.quantization.QuantizedLinears`) adds the sidecar
    ``quantization.safetensors`` (codes, scales, zero-points), referenced from truthprune.json; with
    ``fmt="compressed-tensors"`` the quantized linears are written packed instead
    (:mod:`truthprune.pruning.ct_export`), a checkpoint transformers and vLLM load as quantized."""
    check_finite_weights(model, out_dir)
    with atomic_dir(out_dir, overwrite=overwrite, what=what, kind=kind) as tmp:
        meta = {"versions": environment_versions(), **metadata}
        if quantization is not None and fmt == "compressed-tensors":
            meta["quantization"] = {**quantization.description, "linears": len(quantization.results),
                                    **write_compressed_tensors(model, quantization.by_module(model), tmp)}
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if quantization is not None and fmt != "compressed-tensors":
            meta["quantization"] = quantization.write(tmp, model)
        (tmp / "truthprune.json").write_text(json.dumps(meta, indent=2, default=str))
    return Path(out_dir)
