"""Every common decoder family, end to end on tiny random-weight models built from their configs.

Per family: load (from a saved directory, through truthprune's loader), calibrate (a calibration
source, BOS rule applied), prune with wanda, owl, tplo (and sparsegpt when installed), save,
reload with AutoModelForCausalLM.from_pretrained (identical logits), extract probe activations.
Plus the MoE specifics: routers stay dense, each expert's statistics come only from the tokens
routed to it (also with padding), ``--targets``/``--ignore``, and a family truthprune cannot prune
fails at plan time.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parent))  # tiny_models (pytest runs in importlib mode)

from tiny_models import build, family_configs, text, word_tokenizer  # noqa: E402

from truthprune import CalibrationSamples, UserError, get_registry, load_model, prune_model, save_pruned  # noqa: E402
from truthprune.models.bos import resolve_bos  # noqa: E402
from truthprune.calibration.windows import load_calibration  # noqa: E402
from truthprune.models.adapter import TargetSelection, candidate_weights, decoder_layers, prunable_linears  # noqa: E402
from truthprune.testing.pytest_fixtures import one_thread  # noqa: E402,F401  (autouse: tiny matmuls on one thread)

FAMILIES = list(family_configs())
TOKENIZER_STYLE = {"llama": "gemma", "mistral": "gemma", "gemma2": "gemma", "gemma3": "gemma",
                   "qwen2": "nobos", "qwen3": "nobos", "phi3": "smollm2", "mixtral": "gemma"}
STATEMENTS = ["the city of paris is in france .", "the city of rome is in spain .", "berlin is a capital ."]


def _pruners() -> list[str]:
    names = get_registry().names("pruner")
    return [p for p in ("wanda", "owl", "tplo", "sparsegpt") if p in names]


def _prune(model, calib, name: str, sparsity: float = 0.5, **kw):
    reg = get_registry()
    pruner = reg.create("pruner", name, {})
    allocator = reg.create("allocator", pruner.default_allocator, {})
    n = len(decoder_layers(model))
    profile = [1.0 / n] * n if allocator.needs_truth_profile else None
    return prune_model(model, calib, pruner, allocator, sparsity, batch_size=4, truth_profile=profile, quiet=True, **kw)


@pytest.fixture(scope="module")
def calib_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("calib") / "calib.txt"
    p.write_text("\n\n".join(text(60, seed=s) for s in range(20)))
    return p


@pytest.mark.parametrize("family", FAMILIES)
def test_family_round_trip(family, tmp_path, calib_file):
    from transformers import AutoModelForCausalLM

    from truthprune.truth.activations import extract_last_token

    tok = word_tokenizer(TOKENIZER_STYLE[family])
    src = tmp_path / "src"
    build(family).save_pretrained(src)
    tok.save_pretrained(src)
    loaded = load_model(str(src), device="cpu", dtype="float32")
    assert prunable_linears(decoder_layers(loaded.model)[0])

    rule = resolve_bos(loaded.tokenizer, "auto")
    source = get_registry().create("calibration", "text", {"path": str(calib_file)})
    calib = load_calibration([source], loaded.tokenizer, 8, 32, 0, bos=rule.window_bos)
    if rule.windows:
        assert (calib.input_ids[:, 0] == rule.bos_id).all()

    pruned = {}
    for name in _pruners():
        model = copy.deepcopy(loaded.model)
        report = _prune(model, calib, name)
        assert report.overall == pytest.approx(0.5, abs=0.02), (family, name)
        pruned[name] = model

    model = pruned["wanda"]
    out = save_pruned(model, loaded.tokenizer, tmp_path / "pruned", {"family": family})
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = calib.input_ids[:2]
    with torch.inference_mode():
        assert torch.equal(model(input_ids=ids).logits, reloaded(input_ids=ids).logits)
    zeros = [(lin.weight == 0).float().mean().item() for lin in prunable_linears(decoder_layers(reloaded)[0]).values()]
    assert min(zeros) >= 0.49

    acts = extract_last_token(reloaded, loaded.tokenizer, STATEMENTS, add_bos=rule.statements)
    assert acts.shape[:2] == (len(decoder_layers(reloaded)), len(STATEMENTS)) and bool((acts == acts).all())


def _qwen_moe():
    from transformers import AutoModelForCausalLM, Qwen2MoeConfig

    torch.manual_seed(0)
    cfg = Qwen2MoeConfig(vocab_size=96, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                         shared_expert_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, max_position_embeddings=256)
    return AutoModelForCausalLM.from_config(cfg).eval()


def test_moe_router_and_shared_expert_gate_stay_dense():
    calib = CalibrationSamples(torch.randint(4, 90, (8, 24), generator=torch.Generator().manual_seed(0)),
                               torch.ones(8, 24, dtype=torch.long))
    for model in (build("mixtral"), _qwen_moe()):
        names = list(candidate_weights(decoder_layers(model)[0]))
        targets = list(prunable_linears(decoder_layers(model)[0]))
        before = {n: p.clone() for n, p in model.named_parameters() if ".gate." in n or n.endswith(".gate.weight")
                  or "shared_expert_gate" in n}
        assert before, names
        _prune(model, calib, "wanda")
        for n, p in model.named_parameters():
            if n in before:
                assert torch.equal(p, before[n]), n
        assert not any("shared_expert_gate" in t or t.endswith(".gate") for t in targets)
        experts = model.model.layers[0].mlp.experts
        assert (experts.gate_up_proj == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
        assert (experts.down_proj == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)


def _manual_expert_stats(moe, hidden, keep):
    """sq_norm per expert of gate_up_proj / down_proj inputs, from the routed real tokens only."""
    x = hidden.reshape(-1, hidden.shape[-1])
    _, _, top_k = moe.gate(x)
    out = {}
    experts = moe.experts
    for e in range(experts.num_experts):
        tok = torch.where((top_k == e).any(dim=-1) & keep.reshape(-1))[0]
        xe = x[tok]
        gate, up = torch.nn.functional.linear(xe, experts.gate_up_proj[e]).chunk(2, dim=-1)
        h = experts.act_fn(gate) * up
        out[f"mlp.experts.{e}.gate_up_proj"] = (len(tok), (xe.float() ** 2).sum(0))
        out[f"mlp.experts.{e}.down_proj"] = (len(tok), (h.float() ** 2).sum(0))
    return out


@pytest.mark.parametrize("padded", [False, True])
def test_expert_statistics_come_from_routed_tokens_only(padded):
    from truthprune.pruning.engine.stats import StatsCollector

    model = build("mixtral")
    layer = decoder_layers(model)[0]
    moe = layer.mlp
    hidden = torch.randn(3, 10, 32, generator=torch.Generator().manual_seed(1))
    keep = torch.ones(3, 10, dtype=torch.bool)
    if padded:
        keep[0, :4] = False
        keep[2, 7:] = False
    experts = {n: m for n, m in prunable_linears(layer).items() if "experts" in n}
    collector = StatsCollector(experts, frozenset({"sq_norm"}))
    with torch.inference_mode(), collector.attached():
        collector.begin_batch(keep if padded else None)
        moe(hidden)
        assert not collector.single_call_per_linear()  # routing varies: never stop a MoE layer early
    stats = collector.stats
    expected = _manual_expert_stats(moe, hidden, keep)
    assert sum(stats[n].n_tokens for n in experts if "gate_up" in n) == 2 * int(keep.sum())  # top-2 routing
    for name, (n_tokens, sq) in expected.items():
        assert stats[name].n_tokens == n_tokens, name
        if n_tokens:
            assert torch.allclose(stats[name].sq_norm, sq, rtol=1e-4, atol=1e-5), name


def test_targets_and_ignore_patterns(calib_file):
    model = build("mixtral")
    layer = decoder_layers(model)[0]
    only_attn = TargetSelection.from_options(["self_attn.*"], None)
    assert set(prunable_linears(layer, only_attn)) == {f"self_attn.{p}_proj" for p in "qkvo"}
    no_experts = TargetSelection.from_options(None, ["mlp.experts.*"])
    before = model.model.layers[0].mlp.experts.gate_up_proj.clone()
    calib = CalibrationSamples(torch.randint(4, 90, (4, 16)), torch.ones(4, 16, dtype=torch.long))
    _prune(model, calib, "wanda", selection=no_experts)
    assert torch.equal(model.model.layers[0].mlp.experts.gate_up_proj, before)
    assert (model.model.layers[0].self_attn.q_proj.weight == 0).float().mean().item() == pytest.approx(0.5)
    with pytest.raises(UserError, match="selects no weight"):
        from truthprune.models.adapter import check_targets

        check_targets(model, TargetSelection.from_options(["nothing.*"], None))


def _plan(tmp_path, model_dir, **kw):
    from truthprune.run.config import RunConfig
    from truthprune.run.pipeline import plan_run

    return plan_run(RunConfig(model=str(model_dir), out=str(tmp_path / "out"), calibration=["pydoc"], eval=["ppl"], **kw))


def test_unsupported_family_fails_at_plan_time(tmp_path):
    """An encoder-decoder, and a MoE whose experts are stored transposed (GPT-OSS): refused with
    one line naming the problem before any weight is loaded."""
    from transformers import GptOssConfig, GptOssForCausalLM, T5Config, T5ForConditionalGeneration

    t5 = T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2))
    t5.save_pretrained(tmp_path / "t5")
    word_tokenizer("nobos").save_pretrained(tmp_path / "t5")
    with pytest.raises(UserError, match="decoder-only"):
        _plan(tmp_path, tmp_path / "t5")
    cfg = GptOssConfig(vocab_size=96, hidden_size=32, intermediate_size=16, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, head_dim=8,
                       max_position_embeddings=4096)
    GptOssForCausalLM(cfg).save_pretrained(tmp_path / "oss")
    word_tokenizer("nobos").save_pretrained(tmp_path / "oss")
    with pytest.raises(UserError, match="transposed.*--ignore 'mlp.experts.\\*'"):
        _plan(tmp_path, tmp_path / "oss")
    plan = _plan(tmp_path, tmp_path / "oss", ignore=["mlp.experts.*", "*router*"])  # the suggested fix works
    assert plan.pruner.name == "wanda"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_layers_of_another_type_replay_their_own_mask_and_rotary():
    """Gemma 3 alternates sliding-window and full attention (own mask and rotary base per type): the
    engine's layer-by-layer replay must reproduce the real model's hidden states at every layer."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    from truthprune.pruning.engine.capture import capture_layer0_inputs, use_layer_kwargs
    from truthprune.pruning.engine.stats import layer_output

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=8, sliding_window=4, query_pre_attn_scalar=8,
                           layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                           max_position_embeddings=256)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    ids = torch.randint(4, 90, (2, 16), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        want = model(input_ids=ids, output_hidden_states=True).hidden_states
        layers = decoder_layers(model)
        batches = capture_layer0_inputs(model, layers, ids, torch.ones_like(ids), batch_size=2)
        hidden = batches[0].hidden
        for i in range(2):  # the last entry of hidden_states has the final norm applied
            use_layer_kwargs(batches, i)
            hidden = layer_output(layers[i](hidden, **batches[0].kwargs))
            assert torch.allclose(hidden, want[i + 1], atol=1e-5), f"layer {i} ({cfg.layer_types[i]})"


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3", "phi3"])
def test_default_targets_are_every_linear_of_dense_families(family):
    """Dense families prune exactly what they pruned before --targets/--ignore existed (every nn.Linear)."""
    layer = decoder_layers(build(family))[0]
    linears = {n for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(prunable_linears(layer)) == linears
