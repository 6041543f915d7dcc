"""AttnLRP's propagation rules in the Gradient x Input form, applied to one model instance.

LRP redistributes an output score backwards so that every layer's relevances sum to it
(conservation). For a linear map without bias, plain Gradient x Input already is LRP's epsilon
rule (eps -> 0): R_x = x * (W^T g) sums to y . g = R_y. The non-linear pieces of a transformer
need their own rules (Achtibat et al., "AttnLRP", ICML 2024); written as modified gradients, the
relevance of any tensor t is then simply t * grad(t):

* element-wise activations and normalisations that rescale each element (RMSNorm): the identity
  rule, backward g * f(x)/x, so R_x = f(x) * g = R_y;
* a product of two tensors (the gate of a gated MLP): the uniform rule, half the relevance to each
  factor, i.e. the gradient divided by 2 after the product;
* attention: queries and keys get 1/4 and values 1/2 of the gradient (uniform rule on the two
  matrix products; the softmax keeps its gradient), the constants AttnLRP uses.

The relevance of a weight is the relevance of its connection, R_ij = sum_t x_tj W_ij g_ti, which is
``W * W.grad`` after one backward pass. :func:`lrp_rules` installs the rules on the modules of one
model (instance attributes and hooks, no class is changed) and removes them on exit, so other
models in the process and this model's later forward passes are untouched; the forward values
are the same as without the rules, only gradients differ.

Why not a library: ``lxt`` (LRP for transformers, by AttnLRP's authors) does not import with
transformers 5 (its package imports a BERT patch that needs ``find_pruneable_heads_and_indices``,
removed from transformers, and a ViT patch that needs torchvision), and ``zennit`` attaches rules
to modules (linear, convolution, pooling, activation layers) while the operations a transformer
needs rules for (softmax attention, the gating product) are functions inside ``forward``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

QUERY_KEY_SHARE = 4.0  # AttnLRP: uniform rule on q.k^T, before the softmax
VALUE_SHARE = 2.0  # uniform rule on attention_weights @ v
GATE_SHARE = 2.0  # uniform rule on act(gate) * up


class _IdentityRule(torch.autograd.Function):
    """y = fn(x) forwards; backwards g * y / x (0 where x is 0, where R_x = x*g is 0 anyway)."""

    @staticmethod
    def forward(ctx, fn, x):  # noqa: D102 - autograd protocol
        y = fn(x)
        ratio = torch.where(x != 0, y.float() / x.float(), torch.zeros((), dtype=torch.float32, device=x.device))
        ctx.save_for_backward(ratio.to(x.dtype))
        return y

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (ratio,) = ctx.saved_tensors
        return None, grad * ratio


class _ShareRule(torch.autograd.Function):
    """Identity forwards; backwards the gradient divided by ``share`` (the uniform rule)."""

    @staticmethod
    def forward(ctx, x, share):  # noqa: D102
        ctx.share = share
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad / ctx.share, None


def identity_rule(fn: Any, x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` with the identity rule: all relevance of the output goes back to the same element."""
    return _IdentityRule.apply(fn, x)


def share_rule(x: torch.Tensor, share: float) -> torch.Tensor:
    """``x`` whose incoming relevance is divided by ``share`` (uniform rule over ``share`` factors)."""
    return _ShareRule.apply(x, share)


def is_gated_mlp(module: torch.nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn"))


def is_attention(module: torch.nn.Module) -> bool:
    return all(isinstance(getattr(module, a, None), torch.nn.Linear) for a in ("q_proj", "k_proj", "v_proj"))


def is_scaling_norm(module: torch.nn.Module) -> bool:
    """RMS-style normalisations (every element rescaled, no mean subtracted): Llama, Gemma, Qwen, Mistral."""
    return type(module).__name__.endswith("RMSNorm")


def _gated_mlp_forward(mlp: torch.nn.Module):
    def forward(x):
        gate = identity_rule(mlp.act_fn, mlp.gate_proj(x))
        return mlp.down_proj(share_rule(gate * mlp.up_proj(x), GATE_SHARE))

    return forward


def _norm_forward(norm: torch.nn.Module):
    original = type(norm).forward

    def forward(x):
        return identity_rule(lambda t: original(norm, t), x)

    return forward


def _share_hook(share: float):
    def hook(_module, _inputs, output):
        return share_rule(output, share)

    return hook


def unsupported_blocks(model: torch.nn.Module, layers: list[torch.nn.Module]) -> list[str]:
    """What the rules cannot cover: decoder layers without a gated MLP or q/k/v attention, or a
    normalisation that is not RMS-style (LayerNorm subtracts the mean: not an element rescaling)."""
    problems = []
    for i, layer in enumerate(layers):
        mods = list(layer.modules())
        if not any(is_gated_mlp(m) for m in mods):
            problems.append(f"layer {i} has no gated MLP (gate_proj/up_proj/down_proj)")
        if not any(is_attention(m) for m in mods):
            problems.append(f"layer {i} has no q_proj/k_proj/v_proj attention")
    norms = [type(m).__name__ for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    if norms:
        problems.append(f"it uses {norms[0]} (mean-subtracting normalisation)")
    return problems


@contextmanager
def lrp_rules(model: torch.nn.Module) -> Iterator[int]:
    """Install the rules on ``model``'s gated MLPs, RMS norms and attention projections; yields
    how many modules were changed and restores every one of them on exit."""
    patched: list[torch.nn.Module] = []
    handles = []
    try:
        for module in model.modules():
            if is_gated_mlp(module):
                module.forward = _gated_mlp_forward(module)
                patched.append(module)
            elif is_scaling_norm(module):
                module.forward = _norm_forward(module)
                patched.append(module)
            if is_attention(module):
                handles.append(module.q_proj.register_forward_hook(_share_hook(QUERY_KEY_SHARE)))
                handles.append(module.k_proj.register_forward_hook(_share_hook(QUERY_KEY_SHARE)))
                handles.append(module.v_proj.register_forward_hook(_share_hook(VALUE_SHARE)))
        yield len(patched) + len(handles)
    finally:
        for module in patched:
            del module.forward  # the class's forward is visible again
        for h in handles:
            h.remove()
