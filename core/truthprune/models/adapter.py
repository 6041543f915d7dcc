"""Find a decoder-only model's decoder layers and the weight matmuls inside them, generically.

No model-name checks: the decoder stack is the ``nn.ModuleList`` whose length equals
``config.num_hidden_layers`` and whose blocks contain linear layers (``model.layers`` in Llama,
Mistral, Qwen2/3, Gemma 2/3, Phi-3, Mixtral, Qwen-MoE).

What is a pruning *target* inside a block (``--targets`` / ``--ignore``, module patterns):

* candidates are only weight matmuls: every ``nn.Linear`` (``y = x W^T + b``), and each expert's
  matrix of a mixture-of-experts block that stores its experts as one ``[E, out, in]`` parameter
  (transformers' fused ``gate_up_proj`` / ``down_proj``), one candidate per expert, named
  ``<experts module>.<e>.<parameter>`` (e.g. ``mlp.experts.3.down_proj``). Norms, embeddings,
  rotary tables and routers that are not ``nn.Linear`` are never candidates;
* a candidate is pruned when its dotted name matches one of ``targets`` and none of ``ignore``
  (``fnmatch`` patterns, ``*`` matches dots too). The defaults prune everything except MoE
  routers and shared-expert gates (:data:`DEFAULT_IGNORE`): a router's few rows decide which
  experts run, and pruning it changes the routing of every token, not one matmul's output.

Experts stored transposed (``[E, in, out]``) are not supported yet and fail with a clear
message (see :func:`check_targets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from ..errors import UserError

DEFAULT_TARGETS: tuple[str, ...] = ("*",)
# MoE routers ("mlp.gate" in Mixtral/Qwen-MoE/DeepSeek when it is an nn.Linear, "*router*"
# elsewhere) and Qwen-MoE's one-row shared-expert gate stay dense.
DEFAULT_IGNORE: tuple[str, ...] = ("*.gate", "*router*", "*shared_expert_gate")
EXPERT_PARAMS = ("gate_up_proj", "down_proj", "up_proj", "gate_proj")


@dataclass(frozen=True)
class TargetSelection:
    """Which candidates of a block are pruned (see module doc)."""

    targets: tuple[str, ...] = DEFAULT_TARGETS
    ignore: tuple[str, ...] = DEFAULT_IGNORE

    @classmethod
    def from_options(cls, targets: Any = None, ignore: Any = None) -> TargetSelection:
        """From ``--targets`` / ``--ignore`` values (lists or comma-separated strings); None keeps a default."""

        def norm(value: Any, flag: str, default: tuple[str, ...]) -> tuple[str, ...]:
            if value is None:
                return default
            items = [value] if isinstance(value, str) else list(value)
            out = tuple(p.strip() for item in items for p in str(item).split(",") if p.strip())
            if flag == "--targets" and not out:
                raise UserError("--targets is empty; give module patterns such as 'self_attn.*,mlp.*' (default: '*')")
            return out

        return cls(norm(targets, "--targets", DEFAULT_TARGETS), norm(ignore, "--ignore", DEFAULT_IGNORE))

    def selects(self, name: str) -> bool:
        return any(fnmatchcase(name, p) for p in self.targets) and not any(fnmatchcase(name, p) for p in self.ignore)


DEFAULT_SELECTION = TargetSelection()


class ExpertWeight:
    """One expert's ``[out, in]`` matrix inside a fused ``[E, out, in]`` parameter.

    Shaped like an ``nn.Linear`` for the engine (``weight``, ``in_features``, ``out_features``):
    ``weight`` is a view, so the engine's in-place masking prunes the real parameter.
    """

    is_expert = True

    def __init__(self, module: Any, param: str, index: int):
        self.module, self.param, self.index = module, param, index
        shape = getattr(module, param).shape
        self.out_features, self.in_features = int(shape[1]), int(shape[2])

    @property
    def weight(self):
        return getattr(self.module, self.param).data[self.index]

    def __repr__(self) -> str:
        return f"ExpertWeight({type(self.module).__name__}.{self.param}[{self.index}], {self.out_features}x{self.in_features})"


def resolve_layers(layers: Sequence[int] | None, n_layers: int) -> list[int]:
    """Normalise layer indices (negative counts from the end); None means all layers."""
    if layers is None:
        return list(range(n_layers))
    out = []
    for layer in layers:
        idx = layer + n_layers if layer < 0 else layer
        if not 0 <= idx < n_layers:
            raise UserError(f"layer {layer} does not exist; the model has decoder layers 0..{n_layers - 1}")
        out.append(idx)
    if len(set(out)) != len(out):
        raise UserError(f"layers {list(layers)} name a layer twice")
    return out


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
            "models whose blocks sit in one ModuleList of config.num_hidden_layers blocks (docs/models.md)"
        )
    candidates.sort(key=lambda c: (c[0], c[1]))
    return candidates[0][2]


def expert_modules(layer: Any) -> dict[str, Any]:
    """Modules of one block that hold fused expert weights (3-D ``gate_up_proj``/``down_proj``...)."""
    out = {}
    for name, module in layer.named_modules():
        params = [p for p in EXPERT_PARAMS if getattr(getattr(module, p, None), "dim", lambda: 0)() == 3]
        if params and hasattr(module, "num_experts"):
            out[name] = module
    return out


def candidate_weights(layer: Any) -> dict[str, Any]:
    """Every weight matmul of one block (nn.Linear and per-expert matrices), by dotted name."""
    import torch.nn as nn

    out: dict[str, Any] = {name: m for name, m in layer.named_modules() if isinstance(m, nn.Linear)}
    for name, module in expert_modules(layer).items():
        for param in EXPERT_PARAMS:
            p = getattr(module, param, None)
            if p is None or getattr(p, "dim", lambda: 0)() != 3:
                continue
            for e in range(p.shape[0]):
                out[f"{name}.{e}.{param}"] = ExpertWeight(module, param, e)
    return out


def prunable_linears(layer: Any, selection: TargetSelection | None = None) -> dict[str, Any]:
    """The pruning targets of one decoder block, by dotted name (e.g. ``self_attn.q_proj``).

    ``selection`` defaults to :data:`DEFAULT_SELECTION` (everything but routers and gates).
    """
    sel = selection or DEFAULT_SELECTION
    return {name: m for name, m in candidate_weights(layer).items() if sel.selects(name)}


def check_targets(model: Any, selection: TargetSelection | None = None) -> list[str]:
    """Refuse (UserError) a model truthprune cannot prune as asked; return layer 0's target names.

    Runs on a meta-device skeleton at plan time (no weights needed) and again after loading.
    """
    sel = selection or DEFAULT_SELECTION
    layers = decoder_layers(model)
    for name, module in expert_modules(layers[0]).items():
        if getattr(module, "is_transposed", False) and any(sel.selects(f"{name}.0.{p}") for p in EXPERT_PARAMS):
            raise UserError(
                f"{type(model).__name__} stores its experts ({name}) transposed, which truthprune cannot prune yet; "
                f"leave them dense with --ignore '{name}.*' (docs/models.md)"
            )
    names = list(prunable_linears(layers[0], sel))
    if not names:
        raise UserError(
            f"--targets {','.join(sel.targets)} with --ignore {','.join(sel.ignore) or '(none)'} selects no weight of "
            f"{type(model).__name__}'s decoder layers; its candidates are e.g. {', '.join(list(candidate_weights(layers[0]))[:6])}"
        )
    return names


def layer_param_counts(model: Any, selection: TargetSelection | None = None) -> list[int]:
    """Prunable weights per decoder layer (for parameter-weighted mean sparsity)."""
    return [sum(m.weight.numel() for m in prunable_linears(layer, selection).values()) for layer in decoder_layers(model)]
