"""swl / tplo / tplo-joint allocators: validation, dense pre-pass, presets, and the CLI."""

import json

import pytest
import torch

from truthprune import LayerInfo, LinearStats, UserError, WandaPruner, get_registry
from truthprune_tplo import TploAllocator, TploJointAllocator, TploPruner, swl_sparsities, tplo_sparsities

PROFILE = [0.1, 0.2, 0.3, 0.4]
OUTLIERS = [3.0, 1.0, 2.0, 2.0]


def _info(profile=PROFILE, outliers=OUTLIERS, layers=4):
    extras = {"outlier_ratio_percent": outliers} if outliers is not None else {}
    return LayerInfo(num_layers=layers, params_per_layer=[1] * layers, truth_profile=profile, extras=extras)


def test_registration_defaults_and_needs():
    reg = get_registry()
    for name in ("swl", "tplo", "tplo-joint"):
        assert reg.entry("allocator", name).distribution == "truthprune-tplo"
        assert reg.get("allocator", name).needs_truth_profile
    assert not reg.get("allocator", "swl").needs_dense_pass
    assert reg.get("allocator", "tplo").needs_dense_pass and reg.get("allocator", "tplo").required_stats == {"sq_norm"}
    cfg = reg.create("allocator", "tplo").config
    assert (cfg.m, cfg.lam, cfg.c, cfg.pivot) == (5.0, 0.08, 0.04, None)
    assert reg.create("allocator", "swl").config.c == 0.04
    assert reg.get("pruner", "tplo") is TploPruner
    assert issubclass(TploPruner, WandaPruner) and TploPruner.default_allocator == "tplo"


def test_allocators_match_the_pure_functions():
    reg = get_registry()
    assert reg.create("allocator", "swl", {"c": 0.1}).allocate(0.5, _info(outliers=None)) == pytest.approx([0.56, 0.52, 0.48, 0.44])
    tplo = reg.create("allocator", "tplo", {"lam": 0.1, "c": 0.1, "pivot": 2})
    assert tplo.allocate(0.5, _info()) == pytest.approx([0.42, 0.62, 0.50, 0.46])
    assert tplo.pivot_used == 2


def test_tplo_automatic_pivot():
    # profile peaks at layer 3, first >= half the peak is layer 1 -> pivot (1 + 3) // 2 = 2
    tplo = get_registry().create("allocator", "tplo", {"lam": 0.1, "c": 0.1})
    assert tplo.allocate(0.5, _info()) == pytest.approx(tplo_sparsities(OUTLIERS, PROFILE, 0.5, 0.1, 0.1, 2))
    assert tplo.pivot_used == 2


@pytest.mark.parametrize("name", ["swl", "tplo", "tplo-joint"])
@pytest.mark.parametrize(
    "info, fragment",
    [
        (_info(profile=None), "needs the truth profile"),
        (_info(profile=[0.5, 0.5]), "truth profile has 2 values but the model has 4"),
        (_info(profile=[0.1, 0.2, 0.3, 0.5]), "sum to 1"),
        (_info(profile=[0.6, -0.1, 0.3, 0.2]), "non-negative"),
    ],
)
def test_profile_validation(name, info, fragment):
    with pytest.raises(UserError, match=fragment):
        get_registry().create("allocator", name).allocate(0.5, info)


@pytest.mark.parametrize("name", ["tplo", "tplo-joint"])
def test_outlier_validation(name):
    alloc = get_registry().create("allocator", name)
    with pytest.raises(UserError, match="has 3 values"):
        alloc.allocate(0.5, _info(outliers=[1.0, 2.0, 3.0]))
    with pytest.raises(UserError, match="dense pre-pass"):
        alloc.allocate(0.5, _info(outliers=None))


def test_pivot_beyond_layers_and_bad_options():
    reg = get_registry()
    with pytest.raises(UserError, match="pivot 5 is beyond"):
        reg.create("allocator", "tplo", {"pivot": 5}).allocate(0.5, _info())
    with pytest.raises(UserError, match="'pivot'"):
        reg.create("allocator", "tplo", {"pivot": -1})
    with pytest.raises(UserError, match="'outlier_weight'"):
        reg.create("allocator", "tplo-joint", {"outlier_weight": 1.5})
    with pytest.raises(UserError, match="'c'"):
        reg.create("allocator", "swl", {"c": "big"})


def test_swl_rejects_negative_layer_sparsity():
    with pytest.raises(UserError, match="layer 3 would get sparsity -0.04"):
        get_registry().create("allocator", "swl", {"c": 0.1}).allocate(0.02, _info(outliers=None))


def test_observe_layer_then_allocate_tplo_joint_on_synthetic_tensors():
    gen = torch.Generator().manual_seed(0)
    alloc: TploJointAllocator = get_registry().create("allocator", "tplo-joint", {"outlier_weight": 0.5})
    for i in range(4):
        w = torch.randn(8, 6, generator=gen)
        w[0, 0] = 50.0 * (i + 1) if i % 2 == 0 else w[0, 0]  # layers 0 and 2 get one huge weight
        stats = {"q": LinearStats(n_tokens=8, sq_norm=torch.ones(6)), "o": LinearStats(n_tokens=8, sq_norm=torch.ones(6))}
        alloc.observe_layer(i, {"q": w, "o": torch.randn(6, 6, generator=gen)}, stats)
    ratios = alloc.diagnostics()["outlier_ratio_percent"]
    assert len(ratios) == 4 and all(r >= 0 for r in ratios)
    info = LayerInfo(num_layers=4, params_per_layer=[84] * 4, truth_profile=PROFILE)
    got = alloc.allocate(0.5, info)
    assert sum(got) / 4 == pytest.approx(0.5)
    assert max(got) - min(got) == pytest.approx(0.16)
    assert alloc.diagnostics()["outlier_ratio_percent"] == ratios


def test_tplo_observe_layer_then_allocate():
    alloc: TploAllocator = get_registry().create("allocator", "tplo", {"pivot": 2, "lam": 0.1, "c": 0.1})
    one = torch.ones(4, 3)
    spike = one.clone()
    spike[0, 0] = 100.0  # 12 scores, sum 111, mean 9.25, threshold 46.25 -> 1 of 12
    for i, w in enumerate([spike, one, one, one]):
        alloc.observe_layer(i, {"q": w}, {"q": LinearStats(n_tokens=2, sq_norm=torch.ones(3))})
    assert alloc.diagnostics()["outlier_ratio_percent"] == pytest.approx([100 / 12, 0, 0, 0])
    got = alloc.allocate(0.5, _info(outliers=None))
    assert got == pytest.approx(tplo_sparsities([100 / 12, 0, 0, 0], PROFILE, 0.5, 0.1, 0.1, 2))


@pytest.mark.parametrize("allocator, key", [("swl", "swl_sparsity"), ("tplo", "tplo_sparsity")])
def test_cli_allocate_reproduces_reference_vectors(reference_vectors, cli, tmp_path, allocator, key):
    for model, case in reference_vectors.items():
        path = tmp_path / f"{model}.json"
        path.write_text(json.dumps(case["inputs"]))
        out = cli("allocate", "--allocator", allocator, "--stats", str(path), "--sparsity", "0.5", "--json")
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert set(got) == {"sparsity", "truth_profile"}
        assert got["sparsity"] == pytest.approx(case["expected"][key], abs=1e-6), model
        assert got["truth_profile"] == pytest.approx(case["expected"]["truth_profile"], abs=1e-6), model


def test_cli_pivot_override_auto_and_options(reference_vectors, cli, tmp_path):
    case = reference_vectors["Llama-3-8B-Instruct"]
    path = tmp_path / "llama3.json"
    path.write_text(json.dumps(case["inputs"]))
    auto = json.loads(cli("allocate", "-a", "tplo", "--stats", str(path), "--tplo-pivot", "auto", "--json").stdout)
    assert auto["sparsity"] == pytest.approx(case["expected"]["tplo_sparsity"], abs=1e-6)  # auto picks 10 too
    p12 = json.loads(cli("allocate", "-a", "tplo", "--stats", str(path), "--tplo-pivot", "12", "--json").stdout)
    inp = case["inputs"]
    expected = tplo_sparsities(inp["outlier_ratio_percent"], case["expected"]["truth_profile"], 0.5, 0.08, 0.04, 12)
    assert p12["sparsity"] == pytest.approx(expected, abs=1e-9)
    swl8 = json.loads(cli("allocate", "-a", "swl", "--stats", str(path), "-o", "c=0.08", "--json").stdout)
    assert swl8["sparsity"] == pytest.approx(swl_sparsities(case["expected"]["truth_profile"], 0.5, 0.08))
    joint = cli("allocate", "-a", "tplo-joint", "--stats", str(path), "-o", "outlier_weight=0.25")
    assert joint.returncode == 0 and "mean sparsity 0.500000" in joint.stdout


def test_cli_rejects_pivot_for_allocators_without_one(reference_vectors, cli, tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(reference_vectors["Llama-3-8B-Instruct"]["inputs"]))
    out = cli("allocate", "-a", "swl", "--stats", str(path), "--tplo-pivot", "3")
    assert out.returncode == 2 and "has no pivot" in out.stderr and "Traceback" not in out.stderr
    out = cli("allocate", "-a", "tplo", "--stats", str(path), "--tplo-pivot", "40")
    assert out.returncode == 2 and "pivot 40 is beyond the model's 32 layers" in out.stderr
