"""The truth-aware objective: hand-checked Hessian terms, the reductions to SparseGPT and Wanda,
that the truth terms do what they claim (a smaller output change along the truth direction),
the statement streams, and the pruner through the engine on a tiny model."""

from __future__ import annotations

import copy

import pytest
import torch

from truthprune import LinearStats, SparsityTarget, UserError, get_registry, prune_model
from truthprune_truthaware.objective import (
    combined_hessian,
    diagonal_scores,
    parse_stream_key,
    stream_key,
    truth_directions,
)
from truthprune import statement_samples
from truthprune_truthaware.streams import balanced_sample


def _stats(x: torch.Tensor, streams=None) -> LinearStats:
    x = x.double()
    return LinearStats(n_tokens=x.shape[0], gram=(x.t() @ x).float(), sum=x.sum(0).float(),
                       sq_norm=(x * x).sum(0).float(), streams=streams or {})


def _correlated(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5 + torch.eye(d)
    return torch.randn(n, d, generator=g) @ mix


def test_stream_keys_round_trip():
    assert parse_stream_key(stream_key("neg_cities", 1)) == ("neg_cities", "1")
    assert parse_stream_key("other:thing") is None and parse_stream_key("truth:a:2") is None


def test_combined_hessian_by_hand():
    x = _correlated(50, 6, 0)
    xt, xf = _correlated(10, 6, 1) + 1.0, _correlated(12, 6, 2) - 1.0
    streams = {stream_key("s", 1): _stats(xt), stream_key("s", 0): _stats(xf)}
    st = _stats(x, streams)
    hg = 2 * x.double().t() @ x.double() / 50
    ht = 2 * (xt.double().t() @ xt.double() + xf.double().t() @ xf.double()) / 22
    d = xt.double().mean(0) - xf.double().mean(0)
    dd = torch.outer(d, d)
    expect = hg + 0.5 * torch.trace(hg) / torch.trace(ht) * ht + 2.0 * torch.trace(hg) / torch.trace(dd) * dd
    got = combined_hessian(st, gamma=0.5, delta=2.0)
    assert torch.allclose(got, expect, rtol=1e-5)
    assert torch.allclose(truth_directions(streams, torch.float64)[0], d, rtol=1e-5)
    # no truth terms: exactly SparseGPT's H = 2 X^T X / n
    assert torch.allclose(combined_hessian(st, 0.0, 0.0), hg, rtol=1e-6)


def test_wanda_solver_without_truth_terms_is_wanda():
    from truthprune import mask_from_scores, wanda_scores

    x = _correlated(64, 16, 3)
    w = torch.randn(8, 16, generator=torch.Generator().manual_seed(4))
    st = _stats(x)
    h = combined_hessian(st, 0.0, 0.0)
    target = SparsityTarget(0.5)
    ours = mask_from_scores(diagonal_scores(w, h), target)
    wanda = mask_from_scores(wanda_scores(w, st.sq_norm), target)
    assert torch.equal(ours, wanda)


def test_direction_term_preserves_output_along_truth_direction():
    """With delta > 0 the pruned layer changes its response to the truth direction less."""
    from truthprune_sparsegpt import obs_prune

    d_in = 32
    x = _correlated(400, d_in, 5)
    direction = torch.randn(d_in, generator=torch.Generator().manual_seed(6))
    xt, xf = _correlated(40, d_in, 7) + direction, _correlated(40, d_in, 8) - direction
    streams = {stream_key("s", 1): _stats(xt), stream_key("s", 0): _stats(xf)}
    st = _stats(x, streams)
    w = torch.randn(24, d_in, generator=torch.Generator().manual_seed(9)).double()
    d = truth_directions(streams, torch.float64)[0]
    target = SparsityTarget(0.5)
    errors = {}
    for delta in (0.0, 4.0):
        new, mask = obs_prune(w, combined_hessian(st, 0.0, delta), target)
        assert int(mask.sum()) == w.numel() // 2
        errors[delta] = float(((w - new) @ d).norm())
    assert errors[4.0] < 0.5 * errors[0.0]


def test_balanced_sample_is_seeded_and_balanced():
    labels = [1] * 30 + [0] * 10
    a = balanced_sample(labels, 16, seed=0)
    assert a == balanced_sample(labels, 16, seed=0) and a != balanced_sample(labels, 16, seed=1)
    assert sum(labels[i] for i in a) == 8 and len(a) == 16
    assert balanced_sample(labels, 100, seed=0) == list(range(40))


def test_padded_stream_marks_last_real_token():
    s = statement_samples([[5, 6, 7], [8]], pad=0, last_only=True, description="x")
    assert s.input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert s.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert s.stat_mask.tolist() == [[False, False, True], [True, False, False]]
    assert statement_samples([[5, 6], [8]], 0, False, "x").stat_mask.tolist() == [[True, True], [True, False]]


class _Tok:
    bos_token_id, pad_token_id, eos_token_id, chat_template = 1, 0, 2, None

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [3 + (ord(c) % 120) for c in text[:20]]}


def _truth_dir(tmp_path):
    d = tmp_path / "truth"
    d.mkdir()
    rows = ["statement,label"] + [f"The city of C{i} is in country K{i % 7}.,{i % 2}" for i in range(40)]
    (d / "cities.csv").write_text("\n".join(rows) + "\n")
    return d


def test_pruner_through_engine_is_deterministic_and_uses_streams(tiny_llama, tiny_calibration, tmp_path):
    from truthprune import CalibrationContext
    from truthprune.calibration.windows import attach_auxiliary

    reg = get_registry()
    ctx = CalibrationContext(tokenizer=_Tok(), seed=0, truth_data=str(_truth_dir(tmp_path)))
    models = [tiny_llama, copy.deepcopy(tiny_llama), copy.deepcopy(tiny_llama)]
    opts = [{"per_set": 20}, {"per_set": 20}, {"gamma": 0, "delta": 0}]
    for model, o in zip(models, opts):
        pruner = reg.create("pruner", "truthaware", o)
        pruner.check(ctx)
        calib = attach_auxiliary(copy.copy(tiny_calibration), pruner, ctx)
        assert len(calib.auxiliary) == (2 if o.get("gamma", 1) else 0)
        report = prune_model(model, calib, pruner, reg.create("allocator", "uniform"), 0.5, batch_size=4, quiet=True)
        assert report.overall == pytest.approx(0.5, abs=0.01)
    a, b, plain = (m.state_dict() for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a)  # same config + seed -> identical weights
    assert any(not torch.equal(a[k], plain[k]) for k in a)  # the truth terms change the result


def test_zero_truth_terms_equal_sparsegpt(tiny_llama, tiny_calibration):
    reg = get_registry()
    twin = copy.deepcopy(tiny_llama)
    uniform = reg.create("allocator", "uniform")
    prune_model(tiny_llama, tiny_calibration, reg.create("pruner", "truthaware", {"gamma": 0, "delta": 0}), uniform, 0.5, batch_size=4, quiet=True)
    prune_model(twin, tiny_calibration, reg.create("pruner", "sparsegpt"), uniform, 0.5, batch_size=4, quiet=True)
    a, b = tiny_llama.state_dict(), twin.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_missing_build_sets_fail_before_loading(tmp_path):
    from truthprune import CalibrationContext

    d = tmp_path / "t"
    d.mkdir()
    (d / "animal_class.csv").write_text("statement,label\nA cat is a mammal.,1\nA cat is a fish.,0\n")
    pruner = get_registry().create("pruner", "truthaware")
    with pytest.raises(UserError, match="build_sets"):
        pruner.check(CalibrationContext(tokenizer=None, truth_data=str(d)))
    get_registry().create("pruner", "truthaware", {"gamma": 0, "delta": 0}).check(CalibrationContext(tokenizer=None, truth_data=str(d)))


@pytest.fixture
def tiny_llama():
    from truthprune.testing import tiny_llama

    return tiny_llama(seed=0, layers=2)


@pytest.fixture
def tiny_calibration():
    from truthprune.testing import tiny_calibration

    return tiny_calibration(nsamples=8, seqlen=48, seed=1)
