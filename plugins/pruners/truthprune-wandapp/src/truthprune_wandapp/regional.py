"""The two block-level computations of Wanda++, on a truthprune ``BlockContext``.

* :func:`regional_gradients`: G = the gradient, with respect to every prunable weight of the
  decoder block, of the *regional loss* sum_n ||block(x_n)||_2 (the L2 norm of the block's
  output for each calibration sample n, over its counted tokens), divided by sqrt(N). Only the
  block is differentiated: no full-model backward, memory of one block. Summing per-sample norms
  makes G independent of how samples are grouped into mini-batches; the sqrt(N) makes G grow
  with the number of samples like Wanda's ||X_j|| does (and like the paper's per-sample L2
  aggregation), so alpha keeps its meaning when --nsamples changes.
* :func:`regional_optimisation`: a few RMSprop steps on the kept weights that reduce
  mean ||block_dense(x) - block_sparse(x)||^2 over the counted tokens of one mini-batch per step
  (batches taken in order, cycling). Pruned weights get zero gradient and stay exactly zero.
  The loss of the final weights on mini-batch 0 is measured once more, so the caller can keep
  the masked weights when the steps did not help (a too-large learning rate).

Both are deterministic on a CPU: the batches are visited in a fixed order and nothing is sampled.
"""

from __future__ import annotations

import torch


def _weight_key(name: str) -> str:
    return f"{name}.weight"


def _masked(t: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the positions that do not count (padding), keeping the shape [b, S, d]."""
    if token_mask is None:
        return t
    return t * token_mask.unsqueeze(-1).to(t.dtype)


def _block_params(block, requires_grad: bool) -> dict[str, torch.Tensor]:
    """Fresh float32 leaf copies of the block's prunable weights, keyed as in named_parameters."""
    return {
        _weight_key(n): block.parameters()[_weight_key(n)].detach().float().clone().requires_grad_(requires_grad)
        for n in block.linears
    }


def _as_block_dtype(block, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The block's own dtype for the forward pass (gradients still flow to the float32 leaves)."""
    ref = block.parameters()
    return {k: v.to(ref[k].dtype) for k, v in params.items()}


def regional_gradients(block) -> dict[str, torch.Tensor]:
    """{linear name: |G|} (float32, shaped like the weight) for the block in ``block``."""
    with torch.inference_mode(False), torch.enable_grad():
        params = _block_params(block, requires_grad=True)
        n_samples = torch.zeros((), dtype=torch.float64)
        for j in range(block.n_batches):
            out = block.forward(j, _as_block_dtype(block, params)).float()
            out = _masked(out, block.token_mask(j))
            per_sample = out.flatten(1).norm(dim=1)  # ||block(x_n)||_2 for each sample n
            per_sample.sum().backward()
            n_samples += per_sample.shape[0]
        n = block.all_reduce(n_samples.to(block.device)).item()
        grads = {}
        for name in block.linears:
            g = params[_weight_key(name)].grad
            g = torch.zeros_like(params[_weight_key(name)]) if g is None else g.detach()
            grads[name] = block.all_reduce(g.clone()).abs_() / max(n, 1.0) ** 0.5
    return grads


def _block_loss(block, j: int, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over counted tokens of ||block_dense(x) - block(x)||^2 on mini-batch ``j``."""
    target = block.dense_output(j).float()
    out = block.forward(j, _as_block_dtype(block, params)).float()
    mask = block.token_mask(j)
    diff = _masked(out - target, mask)
    count = diff.shape[0] * diff.shape[1] if mask is None else int(mask.sum())
    return diff.pow(2).sum() / max(count, 1)


def regional_optimisation(block, steps: int, lr: float) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Update the kept weights of the (already masked) block.

    Returns (new weights, losses): the loss before each step, then the loss of the final weights
    on mini-batch 0, comparable with the first entry (the same batch before any step).
    """
    losses: list[float] = []
    with torch.inference_mode(False), torch.enable_grad():
        params = _block_params(block, requires_grad=True)
        keep = {k: (~block.masks[n]).to(block.device) for n, k in ((n, _weight_key(n)) for n in block.linears)}
        with torch.no_grad():
            for k, p in params.items():
                p.mul_(keep[k])
        opt = torch.optim.RMSprop(list(params.values()), lr=lr)
        for step in range(steps):
            loss = _block_loss(block, step % block.n_batches, params)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            for k, p in params.items():
                p.grad.mul_(keep[k])  # masks fixed: pruned weights get no update
                block.all_reduce(p.grad)
            opt.step()
            with torch.no_grad():
                for k, p in params.items():
                    p.mul_(keep[k])
            losses.append(float(loss.detach()))
        with torch.no_grad():
            final = _block_loss(block, 0, params).reshape(1)
            losses.append(float(block.all_reduce(final).item()))
    return {n: params[_weight_key(n)].detach() for n in block.linears}, losses
