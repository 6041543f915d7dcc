"""OptiShear's fitness: the model-wise reconstruction error of one candidate (torch).

A candidate (beta, gamma, per-layer sparsities) is pruned exactly as ``truthprune prune`` would
prune it: through the sequential engine (``truthprune.prune_model``) with the ``optishear``
pruner and allocator, on the search's calibration windows. Its error is that of the whole model's
output: the final hidden states (the LM head's input) on the same windows,

    error = sum_t ||h_t - h_t^dense||^2 / sum_t ||h_t^dense||^2   over real tokens,

so a mistake in an early layer counts through everything it disturbs downstream, which a sum of
per-layer errors would not see. The dense weights are restored after every candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from truthprune import decoder_layers, prunable_linears, prune_model


class _Stop(Exception):
    """Raised once the LM head's input is captured: the head itself is never computed."""


def final_hidden(model: Any, ids: torch.Tensor, mask: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Per mini-batch, the LM head's input [b, S, d] in float32 (on the CPU)."""
    head = model.get_output_embeddings()
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []

    def grab(_module, args):
        captured.append(args[0].detach().float().cpu())
        raise _Stop

    handle = head.register_forward_pre_hook(grab)
    try:
        with torch.inference_mode():
            for s in range(0, int(ids.shape[0]), batch_size):
                try:
                    model(input_ids=ids[s:s + batch_size].to(device), attention_mask=mask[s:s + batch_size].to(device))
                except _Stop:
                    pass
    finally:
        handle.remove()
    return captured


def relative_error(pruned: Sequence[torch.Tensor], dense: Sequence[torch.Tensor], mask: torch.Tensor, batch_size: int) -> float:
    """sum ||h - h_dense||^2 / sum ||h_dense||^2 over the tokens where ``mask`` is 1 (float64 sums)."""
    num = den = 0.0
    for j, (p, d) in enumerate(zip(pruned, dense)):
        m = mask[j * batch_size:(j + 1) * batch_size].to(torch.float64).unsqueeze(-1)
        num += float((((p.double() - d.double()) ** 2) * m).sum())
        den += float(((d.double() ** 2) * m).sum())
    return num / den if den > 0 else float("inf")


class ModelFitness:
    """Prunes ``model`` with a candidate and measures its error; the dense weights come back after."""

    def __init__(self, model: Any, calibration: Any, target: float, nm: tuple[int, int] | None, batch_size: int = 8):
        self.model, self.calibration, self.target, self.nm, self.batch_size = model, calibration, target, nm, batch_size
        self.linears = [prunable_linears(layer) for layer in decoder_layers(model)]
        self.params = [sum(lin.weight.numel() for lin in mods.values()) for mods in self.linears]
        self.dense = [{n: lin.weight.detach().clone() for n, lin in mods.items()} for mods in self.linears]
        self.reference = final_hidden(model, calibration.input_ids, calibration.attention_mask, batch_size)

    def restore(self) -> None:
        with torch.no_grad():
            for mods, saved in zip(self.linears, self.dense):
                for n, lin in mods.items():
                    lin.weight.copy_(saved[n])

    def __call__(self, beta: float, gamma: float, sparsities: Sequence[float] | None) -> float:
        from truthprune import get_registry

        reg = get_registry()
        pruner = reg.create("pruner", "optishear", {"beta": beta, "gamma": gamma})
        allocator = reg.create("allocator", "uniform") if sparsities is None else \
            reg.create("allocator", "optishear", {"sparsity": list(sparsities)})
        try:
            prune_model(self.model, self.calibration, pruner, allocator, self.target, nm=self.nm,
                        batch_size=self.batch_size, quiet=True)
            pruned = final_hidden(self.model, self.calibration.input_ids, self.calibration.attention_mask, self.batch_size)
            return relative_error(pruned, self.reference, self.calibration.attention_mask, self.batch_size)
        finally:
            self.restore()
