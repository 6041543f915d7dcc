"""LoRA adapters that leave pruned weights at exactly 0 (the ``keep_sparsity`` modes of finetune).

The mask is "exactly 0 before training" in each adapted linear: what unstructured and N:M pruning
left (a dense or structurally pruned model has next to no exact zeros, so it is unaffected).

* ``merge``: ordinary peft LoRA; after ``merge_and_unload`` the masked weights are set back to 0.
  Training sees ``W + BA`` everywhere, the saved model ``W + (BA) * keep``: the update to the
  pruned positions is thrown away at the end.
* ``adapter``: the update itself is ``(s * B @ A) * keep``, applied to the weight through a torch
  parametrization, so training already optimises the model that is saved (merging is exact). It
  costs one dense ``out x in`` product per adapted linear and step, and has no input dropout
  (peft's dropout acts on the adapter's input, which a weight-space update does not have).
* ``off``: peft LoRA merged as is; the zeros fill in (the behaviour before masking existed).
"""

from __future__ import annotations

import math
from typing import Any, Callable


def adapted_linears(model, targets: tuple[str, ...]) -> dict[str, Any]:
    """The ``torch.nn.Linear`` modules whose name is a target or ends in ``.target`` (peft's rule)."""
    import torch

    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
            and any(name == t or name.endswith("." + t) for t in targets)}


def keep_masks(linears: dict[str, Any]) -> dict[str, Any]:
    """``{name: keep}`` (True where the weight may change) for every linear that has exact zeros."""
    out = {}
    for name, lin in linears.items():
        keep = lin.weight.detach() != 0
        if not bool(keep.all()):
            out[name] = keep
    return out


def _delta_class():
    """The parametrization module class (defined here so torch is imported only when finetune runs)."""
    import torch

    class _MaskedLoraDelta(torch.nn.Module):
        """Parametrization ``W -> W + (s * B @ A) * keep`` with trainable ``A`` [r, in] and ``B`` [out, r]."""

        def __init__(self, out_features: int, in_features: int, rank: int, scaling: float, keep: torch.Tensor):
            super().__init__()
            self.lora_A = torch.nn.Parameter(torch.empty(rank, in_features, device=keep.device))
            self.lora_B = torch.nn.Parameter(torch.zeros(out_features, rank, device=keep.device))
            torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # peft's (and nn.Linear's) default
            self.scaling = scaling
            self.register_buffer("keep", keep, persistent=False)

        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            delta = (self.lora_B @ self.lora_A) * self.scaling
            return weight + (delta * self.keep).to(weight.dtype)

    return _MaskedLoraDelta


def _attach_masked(model, linears: dict[str, Any], rank: int, alpha: float) -> Callable[[], Any]:
    import torch
    from torch.nn.utils import parametrize

    delta = _delta_class()
    for p in model.parameters():
        p.requires_grad_(False)
    for lin in linears.values():
        keep = lin.weight.detach() != 0
        parametrize.register_parametrization(lin, "weight", delta(lin.out_features, lin.in_features, rank, alpha / rank, keep))

    def merge():
        with torch.no_grad():
            for lin in linears.values():
                parametrize.remove_parametrizations(lin, "weight", leave_parametrized=True)
        return model

    return merge


def attach_adapters(model, targets: tuple[str, ...], rank: int, alpha: float, dropout: float,
                    keep_sparsity: str) -> tuple[Any, Callable[[], Any]]:
    """Wrap ``model`` for LoRA training; returns (the model to train, ``merge()`` -> the merged plain model)."""
    linears = adapted_linears(model, targets)
    if keep_sparsity == "adapter":
        if dropout:
            raise ValueError("keep_sparsity='adapter' has no LoRA dropout (the update lives in weight space); use dropout 0")
        return model, _attach_masked(model, linears, rank, alpha)
    if keep_sparsity not in ("merge", "off"):
        raise ValueError(f"keep_sparsity must be merge, adapter or off, not {keep_sparsity!r}")
    from peft import LoraConfig, get_peft_model

    masks = keep_masks(linears) if keep_sparsity == "merge" else {}
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none",
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)

    def merge():
        import torch

        merged = peft_model.merge_and_unload()
        with torch.no_grad():
            for name, keep in masks.items():
                merged.get_submodule(name).weight.masked_fill_(~keep, 0)
        return merged

    return peft_model, merge
