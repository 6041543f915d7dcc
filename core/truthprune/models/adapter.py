"""Find a decoder-only model's decoder layers and their prunable linear layers, generically.

No model-name checks: the decoder stack is the ``nn.ModuleList`` whose length equals
``config.num_hidden_layers`` and whose blocks contain linear layers (``model.layers`` in Llama,
Mistral, Qwen2 and Gemma). Every ``nn.Linear`` inside a block is prunable (q/k/v/o and
gate/up/down for those families); embeddings, norms and the LM head are outside the blocks.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError


def decoder_layers(model: Any):
    """The ModuleList of decoder blocks, or a UserError for an unsupported architecture."""
    import torch.nn as nn

    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    candidates = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and (n is None or len(module) == n):
            if all(any(isinstance(m, nn.Linear) for m in block.modules()) for block in module):
                candidates.append((name.count("."), name, module))
    if not candidates:
        raise UserError(
            f"cannot find the decoder layers of {type(model).__name__}: truthprune supports decoder-only "
            "models whose blocks sit in one ModuleList of config.num_hidden_layers blocks (Llama, Mistral, Qwen2, Gemma)"
        )
    candidates.sort(key=lambda c: (c[0], c[1]))
    return candidates[0][2]


def prunable_linears(layer: Any) -> dict[str, Any]:
    """Every nn.Linear inside one decoder block, by dotted name (e.g. ``self_attn.q_proj``)."""
    import torch.nn as nn

    return {name: m for name, m in layer.named_modules() if isinstance(m, nn.Linear)}


def layer_param_counts(model: Any) -> list[int]:
    """Prunable weights per decoder layer (for parameter-weighted mean sparsity)."""
    return [sum(m.weight.numel() for m in prunable_linears(layer).values()) for layer in decoder_layers(model)]
