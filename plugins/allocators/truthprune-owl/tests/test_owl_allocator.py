"""The owl allocator and pruner preset: dense pre-pass bookkeeping, extras, errors, CLI."""

import json

import pytest
import torch

from truthprune import LayerInfo, LinearStats, SparsityTarget, UserError, WandaPruner, get_registry
from truthprune_owl import OwlAllocator, OwlPruner


def _layer(q: torch.Tensor, q_sq: torch.Tensor):
    up = torch.ones(2, 3)
    weights = {"self_attn.q_proj": q, "mlp.up_proj": up}
    stats = {
        "self_attn.q_proj": LinearStats(n_tokens=4, sq_norm=q_sq),
        "mlp.up_proj": LinearStats(n_tokens=4, sq_norm=torch.ones(3)),
    }
    return weights, stats


def _observed_allocator(**opts) -> OwlAllocator:
    alloc = get_registry().create("allocator", "owl", opts)
    one = torch.ones(4, 3)
    big = one.clone()
    big[0, 0] = 100.0  # 18 pooled scores, sum 117, mean 6.5, threshold 32.5 -> 1 outlier
    via_norm = one.clone()
    via_norm[1:, 0] = 0.0  # score of [0,0] is 1 x sqrt(10000) = 100; sum 114 -> 1 outlier
    alloc.observe_layer(0, *_layer(big, torch.ones(3)))
    alloc.observe_layer(1, *_layer(one, torch.ones(3)))  # all scores 1 -> 0 %
    alloc.observe_layer(2, *_layer(via_norm, torch.tensor([10000.0, 1.0, 1.0])))
    return alloc


def test_registration_and_declared_needs():
    reg = get_registry()
    assert reg.get("allocator", "owl") is OwlAllocator
    assert reg.entry("allocator", "owl").distribution == "truthprune-owl"
    assert OwlAllocator.needs_dense_pass and not OwlAllocator.needs_truth_profile
    assert OwlAllocator.required_stats == {"sq_norm"}
    cfg = OwlAllocator().config
    assert (cfg.m, cfg.lam) == (5.0, 0.08)


def test_observe_then_allocate_on_synthetic_tensors():
    alloc = _observed_allocator(lam=0.08)
    ratios = alloc.diagnostics()["outlier_ratio_percent"]
    assert ratios == pytest.approx([100 / 18, 0.0, 100 / 18])
    # n = 0.16 * [1, 0, 1], mean 0.10667 -> s = 0.60667 - n
    got = alloc.allocate(0.5, LayerInfo(num_layers=3, params_per_layer=[18, 18, 18]))
    assert got == pytest.approx([0.5 + 0.16 / 3 * 2 - 0.16, 0.5 + 0.16 / 3 * 2, 0.5 + 0.16 / 3 * 2 - 0.16])
    assert sum(got) / 3 == pytest.approx(0.5)


def test_extras_override_observed_ratios():
    alloc = _observed_allocator(lam=0.1)
    info = LayerInfo(num_layers=3, params_per_layer=[1, 1, 1], extras={"outlier_ratio_percent": [1.0, 2.0, 3.0]})
    assert alloc.allocate(0.5, info) == pytest.approx([0.6, 0.5, 0.4])
    assert alloc.diagnostics() == {"outlier_ratio_percent": [1.0, 2.0, 3.0]}


@pytest.mark.parametrize(
    "info, fragment",
    [
        (LayerInfo(num_layers=3, params_per_layer=[1] * 3), "dense pre-pass"),
        (LayerInfo(num_layers=3, params_per_layer=[1] * 3, extras={"outlier_ratio_percent": [1.0, 2.0]}), "has 2 values"),
        (LayerInfo(num_layers=2, params_per_layer=[1] * 2, extras={"outlier_ratio_percent": [1.0, float("nan")]}), "NaN"),
        (LayerInfo(num_layers=2, params_per_layer=[1] * 2, extras={"outlier_ratio_percent": [1.0, 200.0]}), "percentages"),
        (LayerInfo(num_layers=2, params_per_layer=[1, 2, 3], extras={"outlier_ratio_percent": [1.0, 2.0]}), "params_per_layer"),
    ],
)
def test_allocate_rejects_bad_inputs(info, fragment):
    with pytest.raises(UserError, match=fragment):
        OwlAllocator().allocate(0.5, info)


def test_allocate_rejects_sparsity_at_or_above_one():
    info = LayerInfo(num_layers=3, params_per_layer=[1] * 3, extras={"outlier_ratio_percent": [1.0, 2.0, 3.0]})
    with pytest.raises(UserError, match="layer 0 would get sparsity 1.05"):
        OwlAllocator({"lam": 0.1}).allocate(0.95, info)


def test_observe_layer_needs_sq_norm():
    with pytest.raises(UserError, match="sq_norm"):
        OwlAllocator().observe_layer(0, {"q": torch.ones(2, 2)}, {"q": LinearStats(n_tokens=1)})


@pytest.mark.parametrize("opts, field", [({"m": 0}, "'m'"), ({"lam": -0.1}, "'lam'"), ({"lamda": 0.1}, "'lamda'")])
def test_config_errors_name_the_field(opts, field):
    with pytest.raises(UserError, match=field):
        get_registry().create("allocator", "owl", opts)


def test_owl_pruner_preset_is_wanda_with_owl_allocation():
    assert get_registry().get("pruner", "owl") is OwlPruner
    assert issubclass(OwlPruner, WandaPruner) and OwlPruner.default_allocator == "owl"
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    stats = LinearStats(n_tokens=10, sq_norm=torch.tensor([100.0, 1.0, 1.0, 1.0]))
    assert OwlPruner().prune(w, stats, SparsityTarget(0.5)).mask.tolist() == [[False, True, True, False]]


def test_cli_allocate_reproduces_owl_vectors(reference_vectors, cli, tmp_path):
    for model, case in reference_vectors.items():
        path = tmp_path / "stats.json"
        path.write_text(json.dumps(case["inputs"]))
        out = cli("allocate", "--allocator", "owl", "--stats", str(path), "--sparsity", "0.5", "--json")
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert set(got) == {"sparsity", "truth_profile"}
        assert got["sparsity"] == pytest.approx(case["expected"]["owl_sparsity"], abs=1e-6), model
        assert got["truth_profile"] == pytest.approx(case["expected"]["truth_profile"], abs=1e-6), model
