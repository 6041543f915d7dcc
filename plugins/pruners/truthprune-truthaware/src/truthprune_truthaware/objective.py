"""The statement-calibrated objective as small pure functions (torch).

For one linear layer with weight W, SparseGPT minimises the output error on general text,
||W X - W' X||^2 = tr((W - W') H_g (W - W')^T) with H_g = 2 X^T X / n. We add two PSD terms:

* **truth tokens** (``gamma``): H_t = 2 X_t^T X_t / n_t over the inputs that true/false
  statements produce at this layer (by default only at each statement's last token, where the
  probes read). The pruned layer then reconstructs statement representations, not only text.
* **truth directions** (``delta``): D = mean_s d_s d_s^T with d_s = mean(x | true) - mean(x | false)
  of statement set s. The error term tr((W - W') D (W - W')^T) = mean_s ||(W - W') d_s||^2 is the
  change of the layer's output along the directions that separate true from false.

Both are scaled relative to the trace of H_g, so ``gamma = 1`` means "truth statements weigh as
much as all the general text together", and the values are comparable across layers and models:

    H = H_g + gamma * tr(H_g)/tr(H_t) * H_t + delta * tr(H_g)/tr(D) * D

The same H serves two solvers: ``obs`` (SparseGPT's reconstruction, updated weights) and
``wanda`` (the Wanda-family score |W_ij| * sqrt(H_jj), no weight update), which is the
"truth-direction-aware score" mechanism in its diagonal form.

**Dense target** (``target=dense``): every term becomes asymmetric, ||W A_d - W' A_p||^2 with A_p
the pruned model's inputs and A_d the dense model's on the same tokens (text, statement tokens,
truth directions d_p/d_d). Each term then contributes A_p A_d^T to a cross matrix C with the same
weight it gives A_p A_p^T in H (the weights are computed once, from the pruned-side traces), and
the OBS sweep starts from truthprune_sparsegpt's W* = W (C^T + lambda I)(H + lambda I)^-1.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from truthprune import LinearStats, UserError

TRUE, FALSE = "1", "0"


def stream_key(set_name: str, label: int | str) -> str:
    """Name of the auxiliary stream holding the statements of ``set_name`` with ``label``."""
    return f"truth:{set_name}:{label}"


def parse_stream_key(key: str) -> tuple[str, str] | None:
    """(set name, label) of a truth stream key, or None for another pruner's stream."""
    parts = key.split(":")
    if len(parts) != 3 or parts[0] != "truth" or parts[2] not in (TRUE, FALSE):
        return None
    return parts[1], parts[2]


def general_hessian(stats: LinearStats, dtype: torch.dtype) -> torch.Tensor:
    """H_g = 2 X^T X / n of the main calibration data."""
    if stats.gram is None or stats.n_tokens <= 0:
        raise UserError("truthaware needs the Gram statistic of the calibration data (is --nsamples 0?)")
    return stats.gram.to(dtype) * (2.0 / stats.n_tokens)


def truth_token_hessian(streams: Mapping[str, LinearStats], dtype: torch.dtype) -> torch.Tensor | None:
    """H_t = 2 X_t^T X_t / n_t pooled over every truth stream; None when there is none."""
    grams = [(s.gram, s.n_tokens) for k, s in streams.items() if parse_stream_key(k) and s.gram is not None]
    n = sum(c for _, c in grams)
    if not grams or n == 0:
        return None
    return sum(g.to(dtype) for g, _ in grams) * (2.0 / n)


def truth_directions(streams: Mapping[str, LinearStats], dtype: torch.dtype) -> torch.Tensor | None:
    """[S, in]: per statement set, mean input over its true statements minus over its false ones."""
    by_set: dict[str, dict[str, LinearStats]] = {}
    for key, st in streams.items():
        parsed = parse_stream_key(key)
        if parsed is not None:
            by_set.setdefault(parsed[0], {})[parsed[1]] = st
    dirs = []
    for name in sorted(by_set):
        pair = by_set[name]
        if TRUE not in pair or FALSE not in pair:
            continue
        t, f = pair[TRUE], pair[FALSE]
        if t.sum is None or f.sum is None or t.n_tokens == 0 or f.n_tokens == 0:
            continue
        dirs.append(t.sum.to(dtype) / t.n_tokens - f.sum.to(dtype) / f.n_tokens)
    return torch.stack(dirs) if dirs else None


def direction_term(directions: torch.Tensor) -> torch.Tensor:
    """D = mean_s d_s d_s^T (PSD, rank <= number of sets)."""
    return directions.t() @ directions / directions.shape[0]


def combined_hessian(stats: LinearStats, gamma: float, delta: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """H = H_g + gamma * tr(H_g)/tr(H_t) * H_t + delta * tr(H_g)/tr(D) * D (see the module doc).

    A term whose streams are missing, or whose trace is zero (e.g. a layer whose inputs do not
    depend on the statement), is left out: its weight has nothing to act on.
    """
    h = general_hessian(stats, dtype)
    scale = torch.trace(h)
    if gamma > 0:
        ht = truth_token_hessian(stats.streams, dtype)
        if ht is not None and float(torch.trace(ht)) > 0:
            h = h + (gamma * scale / torch.trace(ht)) * ht
    if delta > 0:
        dirs = truth_directions(stats.streams, dtype)
        if dirs is not None:
            d = direction_term(dirs)
            if float(torch.trace(d)) > 0:
                h = h + (delta * scale / torch.trace(d)) * d
    return h


def _dense_side(streams: Mapping[str, LinearStats]) -> dict[str, LinearStats]:
    """The dense inputs' statistics of each truth stream, shaped like the pruned ones: ``cross`` in
    place of ``gram`` (the pairing), the dense ``sum`` in place of the pruned one."""
    out = {}
    for key, st in streams.items():
        if parse_stream_key(key) is None:
            continue
        if st.cross is None or st.dense is None or st.dense.sum is None:
            raise UserError("truthaware target=dense needs the cross statistic and dense sums of every statement stream; "
                            "the engine did not collect them")
        out[key] = LinearStats(n_tokens=st.n_tokens, gram=st.cross, sum=st.dense.sum)
    return out


def combined_cross(stats: LinearStats, gamma: float, delta: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """C = C_g + gamma' C_t + delta' D_c, the asymmetric counterpart of :func:`combined_hessian`.

    C_g = 2 X_p^T X_d / n (text), C_t the same over the statement tokens, D_c = mean_s d_p,s d_d,s^T
    (pruned-model and dense-model truth directions of set s). gamma' and delta' are exactly the
    trace ratios :func:`combined_hessian` uses (pruned side), and a term it leaves out is left out.
    """
    if stats.cross is None or stats.n_tokens <= 0:
        raise UserError("truthaware target=dense needs the cross statistic of the calibration data (is --nsamples 0?)")
    h = general_hessian(stats, dtype)
    scale = torch.trace(h)
    c = stats.cross.to(dtype) * (2.0 / stats.n_tokens)
    if gamma > 0:
        ht = truth_token_hessian(stats.streams, dtype)
        if ht is not None and float(torch.trace(ht)) > 0:
            ct = truth_token_hessian(_dense_side(stats.streams), dtype)
            c = c + (gamma * scale / torch.trace(ht)) * ct
    if delta > 0:
        dirs = truth_directions(stats.streams, dtype)
        if dirs is not None:
            d = direction_term(dirs)
            if float(torch.trace(d)) > 0:
                dense_dirs = truth_directions(_dense_side(stats.streams), dtype)
                c = c + (delta * scale / torch.trace(d)) * (dirs.t() @ dense_dirs / dirs.shape[0])
    return c


def diagonal_scores(weight: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """Wanda-family saliency under H: |W_ij| * sqrt(H_jj) (Wanda itself when H = 2 X^T X / n)."""
    return weight.abs().to(hessian.dtype) * torch.sqrt(torch.diagonal(hessian).clamp_min(0)).reshape(1, -1)
