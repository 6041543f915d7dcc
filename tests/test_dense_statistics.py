"""One-calibration pruning (``Pruner.dense_statistics``) and in-block channel permutation
(``BlockContext.permute_channels``): the engine features one-shot and N:M-permuting methods use."""

from __future__ import annotations

import copy

import pytest
import torch

from truthprune import LinearStats, PluginContractError, WandaPruner, get_registry, prune_checkpoint, prune_model
from truthprune.models.adapter import decoder_layers, prunable_linears
from truthprune.models.loading import weights_fingerprint
from truthprune.pruning.engine.block import LayerBlock
from truthprune.pruning.engine.dense_stats import DenseCache
from truthprune.pruning.masks import mask_from_scores, wanda_scores
from truthprune.plugin.interfaces import SparsityTarget


class DenseWanda(WandaPruner):
    name = "dense-wanda-test"
    dense_statistics = True


class CountingOWL:
    """Wraps the owl allocator to count its dense pre-pass callbacks."""

    def __new__(cls):
        owl = get_registry().create("allocator", "owl")
        calls = []
        original = owl.observe_layer
        owl.observe_layer = lambda i, w, s: (calls.append(i), original(i, w, s))[1]
        owl.calls = calls
        return owl


def _prune(model, calib, pruner, allocator="uniform", sparsity=0.5, **kw):
    alloc = get_registry().create("allocator", allocator) if isinstance(allocator, str) else allocator
    return prune_model(model, calib, pruner, alloc, sparsity, batch_size=4, quiet=True, **kw)


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


def _dense_sq_norms(model, calib):
    """sq_norm of every prunable linear's input in the *dense* model (one full forward)."""
    out, handles = {}, []
    for i, layer in enumerate(decoder_layers(model)):
        for name, lin in prunable_linears(layer).items():
            def hook(_, args, key=(i, name)):
                x = args[0].detach().double().reshape(-1, args[0].shape[-1])
                out[key] = out.get(key, 0) + (x * x).sum(0)
            handles.append(lin.register_forward_pre_hook(hook))
    with torch.no_grad():
        model(input_ids=calib.input_ids, attention_mask=calib.attention_mask)
    for h in handles:
        h.remove()
    return out


def test_statistics_come_from_the_dense_model(tiny_llama, tiny_calibration):
    dense = copy.deepcopy(tiny_llama)
    sq = _dense_sq_norms(dense, tiny_calibration)
    report = _prune(tiny_llama, tiny_calibration, DenseWanda(), sparsity=0.6)
    assert report.overall == pytest.approx(0.6, abs=0.02) and not report.statistics_reused
    for i, (pl, dl) in enumerate(zip(decoder_layers(tiny_llama), decoder_layers(dense))):
        for name, lin in prunable_linears(pl).items():
            w = prunable_linears(dl)[name].weight
            want = mask_from_scores(wanda_scores(w, sq[(i, name)].float()), SparsityTarget(0.6))
            assert torch.equal(lin.weight == 0, want | (w == 0)), (i, name)
    # the sequential Wanda differs after layer 0 (its later layers see pruned inputs)
    seq = copy.deepcopy(dense)
    _prune(seq, tiny_calibration, WandaPruner(), sparsity=0.6)
    assert not all(torch.equal(a, b) for a, b in zip(_weights(seq), _weights(tiny_llama)))


def test_cache_reuses_the_calibration_for_other_sparsities(tiny_llama, tiny_calibration):
    dense = copy.deepcopy(tiny_llama.state_dict())
    store: dict = {}
    cache = DenseCache(store, lambda: weights_fingerprint(tiny_llama))
    results = {}
    for s in (0.5, 0.7, 0.5):
        tiny_llama.load_state_dict(dense)
        report = _prune(tiny_llama, tiny_calibration, DenseWanda(), sparsity=s, dense_cache=cache)
        results.setdefault(s, []).append(_weights(tiny_llama))
        assert report.statistics_reused == (cache.hits > 0)
    assert cache.hits == 2  # one calibration pass for three prunes
    assert all(torch.equal(a, b) for a, b in zip(*results[0.5]))  # reused = recomputed, bit for bit
    fresh = copy.deepcopy(tiny_llama)
    fresh.load_state_dict(dense)
    _prune(fresh, tiny_calibration, DenseWanda(), sparsity=0.7)
    assert all(torch.equal(a, b) for a, b in zip(results[0.7][0], _weights(fresh)))


def test_cache_misses_on_other_weights_or_calibration(tiny_llama, tiny_calibration):
    store: dict = {}
    cache = DenseCache(store, lambda: weights_fingerprint(tiny_llama))
    dense = copy.deepcopy(tiny_llama.state_dict())
    _prune(tiny_llama, tiny_calibration, DenseWanda(), dense_cache=cache)  # the model is now pruned: other weights
    _prune(tiny_llama, tiny_calibration, DenseWanda(), sparsity=0.6, dense_cache=cache)
    assert cache.hits == 0
    tiny_llama.load_state_dict(dense)
    other = copy.deepcopy(tiny_calibration)
    other.input_ids[0, 0] = (other.input_ids[0, 0] + 1) % 100 + 3
    _prune(tiny_llama, other, DenseWanda(), dense_cache=cache)
    assert cache.hits == 0 and len(store) == 1  # one entry kept


def test_allocator_and_pruner_share_one_dense_pass(tiny_llama, tiny_calibration):
    pytest.importorskip("truthprune_owl")
    owl = CountingOWL()
    report = _prune(tiny_llama, tiny_calibration, DenseWanda(), allocator=owl)
    assert owl.calls == [0, 1, 2]
    assert max(report.allocation) - min(report.allocation) > 0.001


def test_dense_and_block_hooks_are_refused(tiny_llama, tiny_calibration):
    class Both(DenseWanda):
        uses_block = True

    with pytest.raises(PluginContractError, match="dense_statistics and uses_block"):
        _prune(tiny_llama, tiny_calibration, Both())


def test_offload_equals_in_memory(tiny_llama, tiny_calibration, tmp_path):
    from transformers import AutoModelForCausalLM

    tiny_llama.save_pretrained(tmp_path / "src")
    ref = copy.deepcopy(tiny_llama)
    _prune(ref, tiny_calibration, DenseWanda(), nm=(2, 4))
    prune_checkpoint(str(tmp_path / "src"), tmp_path / "out", tiny_calibration, DenseWanda(),
                     get_registry().create("allocator", "uniform"), 0.5, nm=(2, 4), batch_size=4, quiet=True)
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    want = dict(ref.named_parameters())
    for n, p in got.named_parameters():
        torch.testing.assert_close(p, want[n], rtol=1e-5, atol=1e-6)


def _run(layer, x, rotary):
    with torch.no_grad():
        out = layer(x, position_embeddings=rotary, attention_mask=None)
    return out[0] if isinstance(out, tuple) else out


def _block(model, stats):
    layer = decoder_layers(model)[0]
    linears = prunable_linears(layer)
    return LayerBlock(0, layer, linears, torch.device("cpu"), [], [], stats=stats), layer


def test_permute_channels_is_exact_and_moves_the_statistics(tiny_llama):
    layer = decoder_layers(tiny_llama)[0]
    x = torch.randn(2, 5, tiny_llama.config.hidden_size)
    pos = torch.arange(5).unsqueeze(0).expand(2, -1)
    rotary = tiny_llama.model.rotary_emb(x, pos)
    before = _run(layer, x, rotary)
    inter = tiny_llama.config.intermediate_size
    g = torch.Generator().manual_seed(0)
    sq, gram = torch.rand(inter, generator=g), torch.rand(inter, inter, generator=g)
    stats = {"mlp.down_proj": LinearStats(n_tokens=3, sq_norm=sq.clone(), gram=gram.clone())}
    block, _ = _block(tiny_llama, stats)
    down_before = block.linears["mlp.down_proj"].weight.detach().clone()
    perm = torch.randperm(inter, generator=g)
    block.permute_channels(perm, inputs_of=["mlp.down_proj"], outputs_of=["mlp.gate_proj", "mlp.up_proj"])
    torch.testing.assert_close(_run(layer, x, rotary), before, rtol=1e-5, atol=1e-6)
    assert torch.equal(block.linears["mlp.down_proj"].weight, down_before[:, perm])
    assert torch.equal(stats["mlp.down_proj"].sq_norm, sq[perm])
    assert torch.equal(stats["mlp.down_proj"].gram, gram[perm][:, perm])
    with pytest.raises(ValueError, match="permutation"):
        block.permute_channels(torch.zeros(inter, dtype=torch.long), inputs_of=["mlp.down_proj"], outputs_of=[])
    with pytest.raises(ValueError, match="reads"):
        block.permute_channels(torch.arange(7), inputs_of=["mlp.down_proj"], outputs_of=[])
