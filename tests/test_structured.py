"""Core structured pruning (truthprune.pruning.structured) with a fixed-score pruner on the tiny GQA Llama:
slicing equals zeroing the removed units, whole KV groups go together, the rewritten config
reloads with plain transformers, and the width arithmetic is hand-checked."""

from __future__ import annotations

import pytest
import torch

from truthprune import StructuredPruner, UnitScores, UserError, plan_widths, prune_structured, structured_layers


class FixedScores(StructuredPruner):
    """Scores from a seeded generator (a control); records what it was asked."""

    name = "fixed-test"

    def importance(self, model, calib, layers, context):
        self.asked = [la.index for la in layers]
        g = torch.Generator().manual_seed(7)
        return {la.index: UnitScores(mlp=torch.rand(la.intermediate, generator=g), heads=torch.rand(la.num_kv, generator=g))
                for la in layers}


def _fresh(tiny_llama):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(type(tiny_llama.config)(**tiny_llama.config.to_dict())).eval()
    model.load_state_dict(tiny_llama.state_dict())
    return model


def _zeroed_reference(dense, pruned_scores, widths):
    """The dense model with every removed unit's output weights zeroed (down columns, o columns)."""
    from truthprune.pruning.structured import top_units

    ref = _fresh(dense)
    for la in structured_layers(ref):
        if la.index not in widths.pruned:
            continue
        s = pruned_scores[la.index]
        keep = top_units(s.mlp, widths.mlp_keep)
        drop = torch.ones(la.intermediate, dtype=torch.bool)
        drop[keep] = False
        with torch.no_grad():
            la.mlp["down_proj"].weight[:, drop] = 0
            kv_keep = top_units(s.heads, widths.kv_keep)
            for g in range(la.num_kv):
                if g not in kv_keep.tolist():
                    cols = slice(g * la.rep * la.head_dim, (g + 1) * la.rep * la.head_dim)
                    la.attn["o_proj"].weight[:, cols] = 0
    return ref


@pytest.mark.parametrize("heads", [False, True])
def test_slicing_equals_zeroing_removed_units(tiny_llama, tiny_calibration, heads):
    model = _fresh(tiny_llama)
    pruner = FixedScores({"heads": heads, "mlp_ratio": 1.25, "kv_groups": 1 if heads else None})
    scores = FixedScores().importance(model, tiny_calibration, structured_layers(model), {})
    report = prune_structured(model, tiny_calibration, pruner, 0.5)
    assert pruner.asked == [0, 1, 2]
    assert model.config.intermediate_size == 40  # round(1.25 * 32)
    assert (model.config.num_key_value_heads, model.config.num_attention_heads) == ((1, 2) if heads else (2, 4))
    assert model.config.head_dim == 8
    widths = plan_widths(structured_layers(_fresh(tiny_llama)), 32, 0.5, pruner.config)
    ref = _zeroed_reference(tiny_llama, scores, widths)
    ids = tiny_calibration.input_ids[:3]
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, ref(ids).logits, atol=1e-5)
    assert report.structure["model_params_after"] < report.structure["model_params_before"]
    assert 0 < report.overall < 1 and all(r.achieved == pytest.approx(report.overall) for r in report.layers)


def test_gqa_groups_removed_consistently(tiny_llama, tiny_calibration):
    """Keeping KV group g keeps k/v rows of head g, q heads 2g and 2g+1 (rep 2) and their o columns."""
    model = _fresh(tiny_llama)
    dense = {la.index: {k: m.weight.detach().clone() for k, m in la.attn.items()} for la in structured_layers(model)}
    scores = FixedScores().importance(model, tiny_calibration, structured_layers(model), {})
    prune_structured(model, tiny_calibration, FixedScores({"heads": True, "kv_groups": 1, "mlp_ratio": 2.0}), 0.5)
    for la in structured_layers(model):
        g = int(scores[la.index].heads.argmax())
        d = dense[la.index]
        assert torch.equal(la.attn["k_proj"].weight, d["k_proj"][g * 8:(g + 1) * 8])
        assert torch.equal(la.attn["v_proj"].weight, d["v_proj"][g * 8:(g + 1) * 8])
        assert torch.equal(la.attn["q_proj"].weight, d["q_proj"][2 * g * 8:(2 * g + 2) * 8])
        assert torch.equal(la.attn["o_proj"].weight, d["o_proj"][:, 2 * g * 8:(2 * g + 2) * 8])
        assert (la.num_heads, la.num_kv) == (2, 1)


def test_saved_checkpoint_reloads_with_plain_transformers(tiny_llama, tiny_calibration, tmp_path):
    from transformers import AutoModelForCausalLM

    model = _fresh(tiny_llama)
    n_dense = sum(p.numel() for p in model.parameters())
    prune_structured(model, tiny_calibration, FixedScores({"heads": True, "mlp_ratio": 1.0, "kv_groups": 1}), 0.5)
    model.save_pretrained(tmp_path / "out")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    n_pruned = sum(p.numel() for p in again.parameters())
    assert n_pruned == sum(p.numel() for p in model.parameters()) < n_dense
    ids = tiny_calibration.input_ids[:2]
    with torch.no_grad():
        assert torch.equal(again(ids).logits, model(ids).logits)


def test_skipped_layers_keep_full_width_in_memory(tiny_llama, tiny_calibration):
    model = _fresh(tiny_llama)
    pruner = FixedScores({"mlp_ratio": 1.0, "skip_first": 1})
    report = prune_structured(model, tiny_calibration, pruner, 0.5)
    assert pruner.asked == [1, 2]
    widths = [la.intermediate for la in structured_layers(model)]
    assert widths == [64, 32, 32]
    assert model.config.intermediate_size == 64 and not report.structure["config_rewritten"]
    assert report.layers[0].achieved == 0.0
    with torch.no_grad():
        assert torch.isfinite(model(tiny_calibration.input_ids[:2]).logits).all()


def test_plan_widths_hand_worked(tiny_llama):
    """Tiny Llama: hidden 32, inter 64, 4 heads / 2 KV of dim 8. Per layer: MLP 3*32*64 = 6144
    (96 per channel), attention 32*32*2 + 2*32*16 = 3072 (1536 per KV group), 9216 in all."""
    layers = structured_layers(tiny_llama)
    cfg = FixedScores.Config
    # 25 % of 3 * 9216 = 6912 -> 2304 per layer -> 24 channels -> keep 40
    assert plan_widths(layers, 32, 0.25, cfg()).mlp_keep == 40
    # heads on: 2304 / 9216 * 2 = 0.5 groups -> round to 0 (banker's) -> MLP alone; at 50 %: 1 group + 3072/96 = 32 channels
    w = plan_widths(layers, 32, 0.5, cfg(heads=True))
    assert (w.kv_keep, w.mlp_keep) == (1, 64 - 32)
    # skip the first layer: 25 % of 27648 over 2 layers = 3456 each -> 36 channels
    assert plan_widths(layers, 32, 0.25, cfg(skip_first=1)).mlp_keep == 28 and plan_widths(layers, 32, 0.25, cfg(skip_first=1)).pruned == [1, 2]
    assert plan_widths(layers, 32, 0.0, cfg(mlp_ratio=0.5)).mlp_keep == 16
    with pytest.raises(UserError, match="mlp_ratio"):
        plan_widths(layers, 32, 0.0, cfg(mlp_ratio=3.0))
    with pytest.raises(UserError, match="none of the 3 layers"):
        plan_widths(layers, 32, 0.5, cfg(skip_first=2, skip_last=1))


def test_mlp_ratio_beyond_the_dense_width_is_refused_at_plan_time(tmp_path):
    """--mlp-ratio is checked against the model's config.json before any weight loads: a ratio that
    would grow the MLP names the valid range; a valid one passes; an unreadable size is left to the load."""
    import json

    from truthprune.pruning.structured import check_mlp_ratio

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536}))
    with pytest.raises(UserError, match=r"mlp_ratio 2.8 keeps 1613 of 1536 channels; choose a ratio in \(0.0017, 2.6667\]"):
        check_mlp_ratio(str(tmp_path), 2.8)
    check_mlp_ratio(str(tmp_path), 1.6)  # 922 channels: the 30 % model
    nested = tmp_path / "gemma"
    nested.mkdir()
    (nested / "config.json").write_text(json.dumps({"text_config": {"hidden_size": 640, "intermediate_size": 2048}}))
    with pytest.raises(UserError, match="keeps 3200 of 2048"):
        check_mlp_ratio(str(nested), 5.0)
    check_mlp_ratio(str(tmp_path / "missing"), 99.0)  # no config readable now: plan_widths checks after the load
