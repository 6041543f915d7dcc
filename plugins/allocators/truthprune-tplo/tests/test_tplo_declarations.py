"""What core learns about the allocators only through their declarations (core names none of
them): shortcut flags, stats-file keys, per-layer signals for the report's alternative allocations."""

from __future__ import annotations

from types import SimpleNamespace

from truthprune import get_registry


def test_flags_come_from_the_allocators():
    flags = get_registry().allocator_flags()
    assert flags["owl-m"][0] == "m" and flags["owl-lambda"][0] == "lam"
    assert flags["swl-scale"][0] == "c" and flags["tplo-pivot"][0] == "pivot"


def test_pivot_auto_is_the_automatic_rule():
    reg = get_registry()
    assert reg.create("allocator", "tplo", {"pivot": "auto"}).config.pivot is None
    assert reg.create("allocator", "tplo", {"pivot": 3}).config.pivot == 3


def test_report_alternatives_use_the_declared_layer_signals():
    from truthprune.run.stages import alternative_allocations

    plan = SimpleNamespace(allocator=SimpleNamespace(name="owl"), config=SimpleNamespace(allocator_options={"lam": 0.05}, sparsity=0.5))
    report = SimpleNamespace(allocation=[0.45, 0.5, 0.55], layers=[SimpleNamespace(params=100)] * 3,
                             diagnostics={"outlier_ratio_percent": [3.0, 2.0, 1.0]})
    out = alternative_allocations(plan, report, [0.2, 0.3, 0.5])
    assert {"owl", "uniform", "swl", "tplo", "tplo-joint"} <= set(out)
    assert out["uniform"] == [0.5, 0.5, 0.5]
    reg = get_registry()
    swl = reg.create("allocator", "swl").allocate(0.5, SimpleNamespace(num_layers=3, params_per_layer=[100] * 3,
                                                                       truth_profile=[0.2, 0.3, 0.5], extras={}))
    assert out["swl"] == swl
    no_signal = alternative_allocations(plan, SimpleNamespace(allocation=[0.5] * 3, layers=report.layers, diagnostics={}), None)
    assert set(no_signal) == {"owl", "uniform"}  # outlier allocators need the ratios, swl/tplo the profile
