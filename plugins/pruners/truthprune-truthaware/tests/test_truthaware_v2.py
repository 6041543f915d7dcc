"""Truth-aware v2: target=pruned is today's pruner bit for bit, target=dense reconstructs toward the
dense model (every term asymmetric), and the controls change only what they claim to change."""

from __future__ import annotations

import copy

import pytest
import torch

from truthprune import CalibrationContext, LinearStats, PruneResult, SparsityTarget, UserError, get_registry, prune_model
from truthprune_truthaware.nonfactual import nonfactual_like, sentence
from truthprune_truthaware.objective import combined_cross, combined_hessian, stream_key
from truthprune_truthaware.plugin import TruthAwarePruner
from truthprune_truthaware.streams import controlled_sample


class _Tok:
    bos_token_id, pad_token_id, eos_token_id, chat_template = 1, 0, 2, None

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [1] * add_special_tokens + [3 + (ord(c) % 120) for c in text[:40]]}


def _truth_dir(tmp_path):
    d = tmp_path / "truth"
    d.mkdir()
    rows = ["statement,label"] + [f"The city of C{i} is in country K{i % 7}.,{i % 2}" for i in range(40)]
    (d / "cities.csv").write_text("\n".join(rows) + "\n")
    return d


class _TodaysTruthAware(TruthAwarePruner):
    """The pruner's prune() as it was before target/control existed: combined H, then obs_prune(W, H)."""

    name = "truthaware-reference-test"

    def prune(self, weight, stats, target):
        from truthprune_sparsegpt import obs_prune

        cfg = self.config
        new_weight, mask = obs_prune(weight, combined_hessian(stats, cfg.gamma, cfg.delta, torch.float64), target,
                                     blocksize=cfg.blocksize, percdamp=cfg.percdamp)
        return PruneResult(mask=mask, weight=new_weight)


def _run(pruner, tmp_path, nm=None, layers=3):
    from truthprune.calibration.windows import attach_auxiliary
    from truthprune.testing import tiny_calibration, tiny_llama

    torch.set_num_threads(1)
    model = tiny_llama(seed=0, layers=layers)
    ctx = CalibrationContext(tokenizer=_Tok(), seed=0, truth_data=str(_truth_dir(tmp_path)) if not (tmp_path / "truth").exists()
                             else str(tmp_path / "truth"))
    calib = attach_auxiliary(tiny_calibration(nsamples=8, seqlen=48, seed=1), pruner, ctx)
    prune_model(model, calib, pruner, get_registry().create("allocator", "uniform"), 0.5, nm=nm, batch_size=4, quiet=True)
    return model.state_dict()


@pytest.mark.parametrize("nm", [None, (2, 4)])
@pytest.mark.parametrize("options", [{"per_set": 20}, {"per_set": 20, "tokens": "all"}])
def test_target_pruned_is_bit_identical_to_todays_pruner(options, nm, tmp_path):
    ours = _run(get_registry().create("pruner", "truthaware", {**options, "target": "pruned"}), tmp_path, nm)
    today = _run(_TodaysTruthAware(options), tmp_path, nm)
    assert all(torch.equal(ours[k], today[k]) for k in today)
    dense = _run(get_registry().create("pruner", "truthaware", {**options, "target": "dense"}), tmp_path, nm)
    assert any(not torch.equal(dense[k], today[k]) for k in today)


def test_sparsegpt_target_pruned_is_bit_identical_to_todays_pruner(tmp_path):
    from truthprune_sparsegpt import SparseGPTPruner, hessian_from_gram, obs_prune

    class Today(SparseGPTPruner):
        name = "sparsegpt-reference-test"

        def prune(self, weight, stats, target):
            new_weight, mask = obs_prune(weight, hessian_from_gram(stats.gram, stats.n_tokens), target)
            return PruneResult(mask=mask, weight=new_weight)

    ours = _run(get_registry().create("pruner", "sparsegpt", {"target": "pruned"}), tmp_path)
    today = _run(Today(), tmp_path)
    assert all(torch.equal(ours[k], today[k]) for k in today)


def _stats(x, xd, streams=None):
    x, xd = x.double(), xd.double()
    return LinearStats(n_tokens=x.shape[0], gram=(x.t() @ x).float(), sum=x.sum(0).float(), cross=(x.t() @ xd).float(),
                       dense=LinearStats(n_tokens=x.shape[0], sum=xd.sum(0).float()), streams=streams or {})


def test_combined_cross_by_hand_and_its_reduction_to_the_hessian():
    g = torch.Generator().manual_seed(0)
    x, xt, xf = torch.randn(50, 6, generator=g), torch.randn(10, 6, generator=g) + 1, torch.randn(12, 6, generator=g) - 1
    drift = lambda a: a + 0.2 * torch.randn(a.shape, generator=g)  # noqa: E731
    xd, xtd, xfd = drift(x), drift(xt), drift(xf)
    streams = {stream_key("s", 1): _stats(xt, xtd), stream_key("s", 0): _stats(xf, xfd)}
    st = _stats(x, xd, streams)
    d64 = lambda a: a.double()  # noqa: E731
    hg = 2 * d64(x).t() @ d64(x) / 50
    ht = 2 * (d64(xt).t() @ d64(xt) + d64(xf).t() @ d64(xf)) / 22
    dp = d64(xt).mean(0) - d64(xf).mean(0)
    dd = d64(xtd).mean(0) - d64(xfd).mean(0)
    cg = 2 * d64(x).t() @ d64(xd) / 50
    ct = 2 * (d64(xt).t() @ d64(xtd) + d64(xf).t() @ d64(xfd)) / 22
    expect = cg + 0.5 * torch.trace(hg) / torch.trace(ht) * ct + 2.0 * torch.trace(hg) / torch.dot(dp, dp) * torch.outer(dp, dd)
    assert torch.allclose(combined_cross(st, 0.5, 2.0), expect, rtol=1e-5)
    same = {k: _stats(a, a) for k, a in ((stream_key("s", 1), xt), (stream_key("s", 0), xf))}
    twin = _stats(x, x, same)
    assert torch.allclose(combined_cross(twin, 0.5, 2.0), combined_hessian(twin, 0.5, 2.0), rtol=1e-5)


def test_dense_target_needs_the_obs_solver_and_asks_for_cross():
    from truthprune import STAT_CROSS

    with pytest.raises(UserError, match="solver=obs"):
        get_registry().create("pruner", "truthaware", {"target": "dense", "solver": "wanda"})
    assert STAT_CROSS in get_registry().create("pruner", "truthaware", {"target": "dense"}).required_stats


def test_shuffled_labels_keep_the_statements_and_permute_the_labels():
    texts = [f"s{i}" for i in range(40)]
    labels = [i % 2 for i in range(40)]
    same, shuffled = controlled_sample(None, texts, labels, "cities", 0, "shuffled_labels", False)
    assert same == texts and sorted(shuffled) == sorted(labels) and shuffled != labels
    assert controlled_sample(None, texts, labels, "cities", 0, "shuffled_labels", False)[1] == shuffled  # seeded
    assert controlled_sample(None, texts, labels, "cities", 0, "none", False) == (texts, labels)


def test_nonfactual_sentences_match_token_counts_and_carry_no_statement_words():
    import random

    statements = ["The city of Paris is in France.", "Madrid is a city in Germany.", "Water boils at one hundred degrees."]
    tok = _Tok()
    got = nonfactual_like(tok, statements, seed=3)
    assert got == nonfactual_like(tok, statements, seed=3) and got != nonfactual_like(tok, statements, seed=4)
    for s, n in zip(statements, got):
        assert len(tok(n)["input_ids"]) == len(tok(s)["input_ids"]), (s, n)
        assert n.endswith(".") and n[0].isupper()
        assert not {"Paris", "France", "Madrid", "Germany", "Water"} & set(n.rstrip(".").split())
    rng = random.Random(0)
    assert all(len(sentence(rng, k).split()) >= min(k, 3) for k in range(1, 15))


def test_controls_run_through_the_engine(tmp_path):
    a = _run(get_registry().create("pruner", "truthaware", {"per_set": 20, "control": "shuffled_labels"}), tmp_path, layers=2)
    b = _run(get_registry().create("pruner", "truthaware", {"per_set": 20, "control": "nonfactual", "target": "dense"}),
             tmp_path, layers=2)
    plain = _run(get_registry().create("pruner", "truthaware", {"per_set": 20}), tmp_path, layers=2)
    assert any(not torch.equal(a[k], plain[k]) for k in plain) and any(not torch.equal(b[k], plain[k]) for k in plain)


def test_dense_target_prune_call_is_sparsegpt_started_from_the_asymmetric_optimum():
    from truthprune_sparsegpt import dense_target_weight, obs_prune

    g = torch.Generator().manual_seed(5)
    x = torch.randn(200, 16, generator=g)
    st = _stats(x, x + 0.1 * torch.randn(x.shape, generator=g))
    w = torch.randn(8, 16, generator=g)
    got = get_registry().create("pruner", "truthaware", {"target": "dense", "gamma": 0, "delta": 0}).prune(copy.deepcopy(w), st, SparsityTarget(0.5))
    h = combined_hessian(st, 0, 0)
    new, mask = obs_prune(dense_target_weight(w, h, combined_cross(st, 0, 0), 0.01), h, SparsityTarget(0.5))
    assert torch.equal(got.mask, mask) and torch.equal(got.weight, new.float())
