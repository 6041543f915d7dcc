"""Save a pruned model as a standard ``save_pretrained`` safetensors checkpoint.

Same config and vocabulary as the input (zeros stay in place; nothing is resized), plus
``truthprune.json`` with the run config, versions, per-layer sparsities and seed. Written through
:func:`truthprune.run.outputs.atomic_dir`, so an interrupted save leaves nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .outputs import atomic_dir


def environment_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("truthprune", "torch", "transformers", "datasets", "scikit-learn", "pydantic", "compressed-tensors"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def save_pruned(model: Any, tokenizer: Any, out_dir: str | Path, metadata: dict[str, Any], overwrite: bool = False,
                quantization: Any = None, fmt: str = "safetensors") -> Path:
    """Write model + tokenizer + truthprune.json to ``out_dir`` atomically; return the path.

    ``quantization`` (a :class:`truthprune.pruning.quantization.QuantizedLinears`) adds the sidecar
    ``quantization.safetensors`` (codes, scales, zero-points), referenced from truthprune.json; with
    ``fmt="compressed-tensors"`` the quantized linears are written packed instead
    (:mod:`truthprune.pruning.ct_export`), a checkpoint transformers and vLLM load as quantized."""
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        meta = {"versions": environment_versions(), **metadata}
        if quantization is not None and fmt == "compressed-tensors":
            meta["quantization"] = quantization.write_compressed_tensors(tmp, model)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if quantization is not None and fmt != "compressed-tensors":
            meta["quantization"] = quantization.write(tmp, model)
        (tmp / "truthprune.json").write_text(json.dumps(meta, indent=2, default=str))
    return Path(out_dir)
