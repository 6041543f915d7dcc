"""Structured pruning: remove whole MLP channels and KV head groups, so the model really shrinks.

A :class:`~truthprune.plugin.interfaces.StructuredPruner` plugin only scores units; this module does the
rest, the same way for every importance:

* :func:`structured_layers` finds, per decoder layer, the MLP (gate/up/down) and attention
  (q/k/v/o) linears and the head geometry (Llama, Mistral, Qwen2, Gemma naming);
* :func:`plan_widths` turns ``mlp_ratio`` or the target sparsity (fraction of all MLP + attention
  weights) into one kept MLP width and one kept number of KV groups;
* :func:`prune_structured` asks the pruner for importances, keeps the top units of every pruned
  layer, slices the weights (gate/up rows + down columns of a channel together; q rows of all
  query heads of a KV group + its k/v rows + the matching o columns together) and rewrites the
  config (``intermediate_size``, ``num_attention_heads``, ``num_key_value_heads``; ``head_dim``
  is written explicitly) so ``save_pretrained`` gives a checkpoint that
  ``AutoModelForCausalLM.from_pretrained`` loads with no custom code.

One width for every layer is what a standard config describes. ``skip_first``/``skip_last``
keep layers whole, so the in-memory model then has per-layer widths: evaluating it works, but
saving it would need a config with a per-layer ``intermediate_size`` list and modelling code
that reads it, which truthprune does not ship (plan-time error; see docs/architecture.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..models.adapter import decoder_layers
from ..models.spec import cached_config
from ..plugin.interfaces import UnitScores

log = logging.getLogger(__name__)

_MLP = ("gate_proj", "up_proj", "down_proj")
_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")


# ----------------------------------------------------------------------------- plan time (no torch)


def check_structured_plan(config: Any, pruner: Any) -> None:
    """Refuse, before any model loads, what a structured pruner cannot do (exit 2 with the fix)."""
    opts = pruner.config
    if config.allocator not in (None, "uniform"):
        raise UserError(
            f"structured pruner {pruner.name!r} keeps one width for every layer (a standard config has one "
            f"intermediate_size), so allocator {config.allocator!r} does not apply; drop --allocator"
        )
    if config.allocator_options:
        raise UserError(f"structured pruner {pruner.name!r} takes no allocator options; drop --allocator-opt")
    if config.nm is not None:
        raise UserError(f"--nm is an unstructured weight pattern; structured pruner {pruner.name!r} removes whole units; drop --nm")
    if opts.mlp_ratio is not None and "sparsity" in config.model_fields_set:
        raise UserError("give either --sparsity (fraction of MLP+attention weights removed) or the pruner option "
                        "mlp_ratio (kept intermediate / hidden), not both")
    if opts.heads and opts.mlp_ratio is not None and opts.kv_groups is None:
        raise UserError("heads=true with mlp_ratio needs kv_groups=N (KV groups kept per layer); or use --sparsity, "
                        "which decides how many groups go")
    if opts.mlp_ratio is not None:
        check_mlp_ratio(config.model, opts.mlp_ratio)
    if (opts.skip_first or opts.skip_last) and config.save:
        raise UserError(
            "skip_first/skip_last leave layers at full width, and a standard config has one intermediate_size for all "
            "layers, so that model cannot be saved loadable by plain transformers; drop the skip options or --save"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError(f"structured pruner {pruner.name!r} runs in one process; launch it without torchrun")
    if config.bias_correction:
        raise UserError("--bias-correction applies to the mask engine's linears; a structured pruner slices whole units "
                        "instead: drop --bias-correction")
    if config.quantizer is not None:
        raise UserError(f"structured pruner {pruner.name!r} does not run through the quantizing engine; save its model, "
                        f"then quantize it: truthprune prune --model DIR --pruner magnitude --sparsity 0 --quantizer {config.quantizer}")


def check_mlp_ratio(model: str, mlp_ratio: float) -> None:
    """mlp_ratio against the model's own width when its config is readable without loading it
    (otherwise :func:`plan_widths` checks the same after the load): a ratio above the dense
    intermediate / hidden would grow the MLP."""
    cfg = cached_config(model)
    sizes = cfg.get("text_config") if cfg and isinstance(cfg.get("text_config"), dict) else cfg
    hidden = sizes.get("hidden_size") if sizes else None
    inter = sizes.get("intermediate_size") if sizes else None
    if not (isinstance(hidden, int) and isinstance(inter, int) and hidden > 0):
        return
    keep = round(mlp_ratio * hidden)
    if not 1 <= keep <= inter:
        raise UserError(f"mlp_ratio {mlp_ratio} keeps {keep} of {inter} channels; choose a ratio in "
                        f"({1 / hidden:.4f}, {inter / hidden:.4f}] (this model's dense ratio is {inter / hidden:.4f})")


# ----------------------------------------------------------------------------- layout


@dataclass
class StructuredLayer:
    """The removable units of one decoder layer and the linears that hold them."""

    index: int
    mlp: dict[str, Any]  # gate_proj / up_proj / down_proj -> nn.Linear
    attn: dict[str, Any]  # q_proj / k_proj / v_proj / o_proj -> nn.Linear
    attn_module: Any
    num_heads: int
    num_kv: int
    head_dim: int

    @property
    def intermediate(self) -> int:
        return int(self.mlp["gate_proj"].out_features)

    @property
    def rep(self) -> int:
        return self.num_heads // self.num_kv

    def params(self) -> int:
        return sum(m.weight.numel() for m in (*self.mlp.values(), *self.attn.values()))

    def aggregate(self, per_param: dict[str, Any], heads: bool = True):
        """Sum element-wise scores (tensors shaped like each weight, keyed by 'gate_proj', 'q_proj',
        ...) into one score per MLP channel and, if ``heads``, one per KV group."""
        import torch

        def up(t):  # at least float32, float64 stays float64
            return t.to(torch.promote_types(t.dtype, torch.float32))

        g, u, d = (up(per_param[k]) for k in _MLP)
        mlp = g.sum(1) + u.sum(1) + d.sum(0)
        if not heads:
            return UnitScores(mlp=mlp, heads=None)
        q, k, v, o = (up(per_param[k]) for k in _ATTN)
        n, hd = self.num_kv, self.head_dim
        group = (q.reshape(n, -1).sum(1) + k.reshape(n, -1).sum(1) + v.reshape(n, -1).sum(1)
                 + o.t().reshape(n, -1).sum(1))
        return UnitScores(mlp=mlp, heads=group)


def structured_layers(model: Any) -> list[StructuredLayer]:
    """The MLP/attention linears of every decoder layer, or a UserError naming what is missing."""
    cfg = model.config
    heads = int(cfg.num_attention_heads)
    kv = int(getattr(cfg, "num_key_value_heads", None) or heads)
    out = []
    for i, layer in enumerate(decoder_layers(model)):
        mlp = getattr(layer, "mlp", None)
        attn = getattr(layer, "self_attn", None)
        if mlp is None or attn is None or not all(hasattr(mlp, n) for n in _MLP) or not all(hasattr(attn, n) for n in _ATTN):
            raise UserError(
                f"structured pruning needs decoder layers with mlp.gate_proj/up_proj/down_proj and self_attn.q/k/v/o_proj "
                f"(Llama, Mistral, Qwen2, Gemma); {type(model).__name__} layer {i} has another layout"
            )
        head_dim = int(getattr(attn, "head_dim", None) or attn.q_proj.out_features // heads)
        n_heads = attn.q_proj.out_features // head_dim
        n_kv = attn.k_proj.out_features // head_dim
        out.append(StructuredLayer(i, {n: getattr(mlp, n) for n in _MLP}, {n: getattr(attn, n) for n in _ATTN},
                                   attn, n_heads, n_kv, head_dim))
    return out


# ----------------------------------------------------------------------------- widths


@dataclass
class Widths:
    """One kept width for every pruned layer; the other layers stay whole."""

    mlp_keep: int
    kv_keep: int
    pruned: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"mlp_keep": self.mlp_keep, "kv_keep": self.kv_keep, "pruned_layers": self.pruned}


def plan_widths(layers: list[StructuredLayer], hidden: int, sparsity: float, opts: Any) -> Widths:
    """The kept MLP width and KV groups from ``opts.mlp_ratio`` or ``sparsity`` (fraction of all
    MLP + attention weights of the model removed, made up by the non-skipped layers)."""
    n = len(layers)
    pruned = list(range(opts.skip_first, n - opts.skip_last))
    if not pruned:
        raise UserError(f"skip_first={opts.skip_first} and skip_last={opts.skip_last} leave none of the {n} layers to prune")
    ref = layers[pruned[0]]
    inter, kv = ref.intermediate, ref.num_kv
    if any(layers[i].intermediate != inter or layers[i].num_kv != kv for i in pruned):
        raise UserError("structured pruning needs the same width in every pruned layer (the input model has per-layer widths)")
    chan = sum(ref.mlp[k].weight.shape[1 if k != "down_proj" else 0] for k in _MLP)  # weights per MLP channel
    group = sum(ref.attn[k].weight.numel() for k in _ATTN) // kv  # weights per KV group
    if opts.mlp_ratio is not None:
        keep = round(opts.mlp_ratio * hidden)
        if not 1 <= keep <= inter:
            raise UserError(f"mlp_ratio {opts.mlp_ratio} keeps {keep} of {inter} channels; choose a ratio in "
                            f"({1 / hidden:.4f}, {inter / hidden:.4f}]")
        kv_keep = opts.kv_groups if opts.heads else kv
    else:
        total = sum(layer.params() for layer in layers)
        per_layer = sparsity * total / len(pruned)  # weights each pruned layer must lose
        if per_layer > ref.params() - chan - group:
            raise UserError(f"--sparsity {sparsity} would remove more than all of the {len(pruned)} pruned layers; "
                            "lower it or skip fewer layers")
        if opts.heads and opts.kv_groups is None:
            kv_keep = kv - round(per_layer / ref.params() * kv)
        else:
            kv_keep = opts.kv_groups if opts.heads else kv
        kv_keep = max(1, min(kv, kv_keep))
        rest = max(0.0, per_layer - (kv - kv_keep) * group)
        keep = max(1, min(inter, inter - round(rest / chan)))
    if opts.heads and not 1 <= kv_keep <= kv:
        raise UserError(f"kv_groups={kv_keep} is outside 1..{kv} (the model's KV heads per layer)")
    return Widths(mlp_keep=int(keep), kv_keep=int(kv_keep), pruned=pruned)


def top_units(scores: Any, keep: int):
    """Indices of the ``keep`` highest scores, ascending; ties go to the lower index (stable)."""
    import torch

    order = torch.sort(-scores.double(), stable=True).indices[:keep]
    return torch.sort(order).values


# ----------------------------------------------------------------------------- slicing


def _slice_linear(linear: Any, idx: Any, dim: int) -> None:
    """Keep ``idx`` along ``dim`` of the weight (0: outputs/rows, 1: inputs/columns), in place."""
    import torch

    with torch.no_grad():
        w = linear.weight.index_select(dim, idx.to(linear.weight.device)).clone()
        linear.weight = torch.nn.Parameter(w, requires_grad=linear.weight.requires_grad)
        if dim == 0 and linear.bias is not None:
            linear.bias = torch.nn.Parameter(linear.bias[idx.to(linear.bias.device)].clone(), requires_grad=linear.bias.requires_grad)
    if dim == 0:
        linear.out_features = int(w.shape[0])
    else:
        linear.in_features = int(w.shape[1])


def apply_units(layer: StructuredLayer, mlp_idx: Any, kv_idx: Any | None) -> None:
    """Slice one decoder layer down to the kept MLP channels and KV groups."""
    import torch

    _slice_linear(layer.mlp["gate_proj"], mlp_idx, 0)
    _slice_linear(layer.mlp["up_proj"], mlp_idx, 0)
    _slice_linear(layer.mlp["down_proj"], mlp_idx, 1)
    if kv_idx is None:
        return
    hd, rep = layer.head_dim, layer.rep
    kv_rows = (kv_idx[:, None] * hd + torch.arange(hd)[None, :]).reshape(-1)
    q_heads = (kv_idx[:, None] * rep + torch.arange(rep)[None, :]).reshape(-1)
    q_rows = (q_heads[:, None] * hd + torch.arange(hd)[None, :]).reshape(-1)
    _slice_linear(layer.attn["q_proj"], q_rows, 0)
    _slice_linear(layer.attn["k_proj"], kv_rows, 0)
    _slice_linear(layer.attn["v_proj"], kv_rows, 0)
    _slice_linear(layer.attn["o_proj"], q_rows, 1)
    layer.num_kv, layer.num_heads = int(kv_idx.numel()), int(q_heads.numel())
    for attr, value in (("num_heads", layer.num_heads), ("num_key_value_heads", layer.num_kv)):
        if hasattr(layer.attn_module, attr):  # older modelling code keeps these on the module
            setattr(layer.attn_module, attr, value)


def rewrite_config(model: Any, layers: list[StructuredLayer]) -> bool:
    """Describe the sliced model in its config; False (config untouched) if widths differ per layer."""
    inter = {layer.intermediate for layer in layers}
    heads = {(layer.num_heads, layer.num_kv) for layer in layers}
    if len(inter) > 1 or len(heads) > 1:
        return False
    cfg = model.config
    head_dim = layers[0].head_dim
    cfg.intermediate_size = inter.pop()
    (cfg.num_attention_heads, cfg.num_key_value_heads) = heads.pop()
    cfg.head_dim = head_dim
    return True


# ----------------------------------------------------------------------------- the whole prune


def prune_structured(model: Any, calib: Any, pruner: Any, sparsity: float, batch_size: int = 8, quiet: bool = False):
    """Score, select and slice; return a :class:`~truthprune.pruning.engine.sequential.PruneReport` whose
    per-layer ``achieved`` is the fraction of that layer's MLP + attention weights removed."""
    import time

    from .engine.steps import LayerResult, PruneReport

    opts = pruner.config
    layers = structured_layers(model)
    before = [layer.params() for layer in layers]
    total_before = sum(p.numel() for p in model.parameters())
    shape_before = {"intermediate_size": layers[0].intermediate, "num_key_value_heads": layers[0].num_kv}
    widths = plan_widths(layers, int(model.config.hidden_size), sparsity, opts)
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    context = {"device": device, "batch_size": batch_size, "quiet": quiet, "heads": bool(opts.heads)}
    scores = pruner.importance(model, calib, [layers[i] for i in widths.pruned], context)
    t1 = time.perf_counter()
    for i in widths.pruned:
        layer, s = layers[i], scores[i]
        if s.mlp.shape != (layer.intermediate,):
            raise ValueError(f"pruner {pruner.name!r} returned {tuple(s.mlp.shape)} MLP scores for layer {i}, expected ({layer.intermediate},)")
        kv_idx = None
        if opts.heads and widths.kv_keep < layer.num_kv:
            if s.heads is None or s.heads.shape != (layer.num_kv,):
                raise ValueError(f"pruner {pruner.name!r} returned no/ill-shaped head scores for layer {i}")
            kv_idx = top_units(s.heads, widths.kv_keep)
        apply_units(layer, top_units(s.mlp, widths.mlp_keep), kv_idx)
    uniform = rewrite_config(model, layers)
    after = [layer.params() for layer in layers]
    n_before = sum(before)
    report = PruneReport(target=float(sparsity if opts.mlp_ratio is None else 1 - sum(after) / n_before), nm=None,
                         allocation=[(1 - a / b) if i in widths.pruned else 0.0 for i, (a, b) in enumerate(zip(after, before))])
    for i, (a, b) in enumerate(zip(after, before)):
        lin = {f"{part}.{name}": 1 - m.weight.numel() / b for part, group in (("mlp", layers[i].mlp), ("self_attn", layers[i].attn))
               for name, m in group.items()}
        report.layers.append(LayerResult(index=i, target=report.allocation[i], achieved=1 - a / b, linears=lin, params=b))
    report.overall = 1 - sum(after) / n_before
    report.prune_pass_s = round(t1 - t0 + (time.perf_counter() - t1), 3)
    report.phase_s = {"importance": round(t1 - t0, 3), "slice": round(time.perf_counter() - t1, 3)}
    total = sum(p.numel() for p in model.parameters())
    report.structure = {**widths.as_dict(), "before": shape_before,
                        "model_params_before": total_before, "model_params_after": total, "config_rewritten": uniform}
    log.info("structured: kept %d MLP channels and %d KV groups in layers %d..%d; MLP+attention weights %d -> %d "
             "(%.4f removed); model parameters now %d; config %s", widths.mlp_keep, widths.kv_keep, widths.pruned[0],
             widths.pruned[-1], n_before, sum(after), report.overall, total, "rewritten" if uniform else "left (per-layer widths)")
    return report
