"""Dense-target streams: the engine's dense copy of the calibration data is exactly the dense
model's input to every linear, pairs token by token with the pruned copy (the ``cross``
statistic), and gives the same statistics in memory and with --offload (torchrun:
tests/test_distributed.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("dist_prune_worker.py")


@pytest.fixture(scope="module")
def worker():
    spec = importlib.util.spec_from_file_location("dist_prune_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def recorded(worker, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("dense")
        worker.tiny_model().save_pretrained(out / "src")
        return worker.dense_runs(out / "src", out)
    finally:
        torch.set_num_threads(threads)


def _dense_inputs(worker, calib) -> list[dict[str, torch.Tensor]]:
    """Sums over the statistics tokens of every linear's input in the *unpruned* model: (main, aux) per linear, in engine order."""
    from truthprune.models.adapter import decoder_layers, prunable_linears

    model = worker.tiny_model()
    out = []
    for layer in decoder_layers(model):
        for name, lin in prunable_linears(layer).items():
            got = {}
            for key, samples in (("main", calib), ("aux", calib.auxiliary["aux"])):
                keep = samples.attention_mask.bool()
                if samples.stat_mask is not None:
                    keep &= samples.stat_mask
                h = lin.register_forward_pre_hook(lambda m, a, key=key, keep=keep: got.__setitem__(key, a[0][keep].double().sum(0)))
                with torch.no_grad():
                    model(input_ids=samples.input_ids, attention_mask=samples.attention_mask)
                h.remove()
            out.append(got)
    return out


def test_memory_and_offload_see_identical_dense_statistics(recorded):
    mem, off = recorded
    assert len(mem) == len(off) == 3 * 7
    for a, b in zip(mem, off):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_dense_copy_is_the_dense_models_input_to_every_linear(worker, recorded):
    mem, _ = recorded
    expect = _dense_inputs(worker, worker.dense_calibration())
    for k, (seen, want) in enumerate(zip(mem, expect)):
        assert torch.allclose(seen["dense_sum"].double(), want["main"], rtol=1e-4, atol=1e-4), k
        assert torch.allclose(seen["aux_dense_sum"].double(), want["aux"], rtol=1e-4, atol=1e-4), k
    assert int(mem[0]["n"]) == 10 * 48 - 7 and int(mem[0]["aux_n"]) == 7  # padding and unmasked tokens excluded


def test_cross_pairs_tokens_and_departs_from_the_gram_once_pruning_drifts(recorded):
    mem, _ = recorded
    # layer 0, q_proj: both copies are the embeddings, so X_p^T X_d is symmetric and its trace is sum ||x||^2
    first = mem[0]
    assert torch.allclose(first["cross"], first["cross"].t(), atol=1e-4)
    assert torch.allclose(torch.diagonal(first["cross"]), first["dense_sq"], rtol=1e-5)
    assert torch.allclose(first["sum"], first["dense_sum"])
    # layer 2: the pruned inputs have drifted from the dense ones
    deep = mem[2 * 7]
    assert not torch.allclose(deep["sum"], deep["dense_sum"], rtol=1e-3)
    assert not torch.allclose(deep["cross"], deep["cross"].t(), rtol=1e-3)


def test_memory_estimate_counts_the_dense_copy():
    from truthprune.pruning.engine import memory as mem

    shape = mem.ModelShape(hidden=4, intermediate=8, layers=2, heads=2, vocab=10, layer_params=100, total_params=300)
    plain, dense = mem.estimate_memory(shape, 3, 5, 2), mem.estimate_memory(shape, 3, 5, 2, dense=True)
    assert dense.activations == 2 * plain.activations and dense.working > plain.working and dense.weights == plain.weights
    rows = mem.estimate_memory(shape, 3, 5, 2, dense=True, dense_rows=True)
    assert rows.activations == dense.activations + 3 * 5 * (2 * 4 + 8) * 4


def test_memory_estimate_counts_auxiliary_streams():
    """Statement streams are held like the text (padded tokens, their masks), doubled with the dense
    copy; their dense rows are only the tokens the statistics read."""
    from truthprune import CalibrationSamples, statement_samples
    from truthprune.pruning.engine import memory as mem

    shape = mem.ModelShape(hidden=4, intermediate=8, layers=2, heads=2, vocab=10, layer_params=100, total_params=300)
    text = torch.zeros((3, 5), dtype=torch.long)
    stmts = statement_samples([[5, 6, 7], [8], [9, 9]], pad=0, last_only=True, description="x")  # 3 x 3 padded
    calib = CalibrationSamples(text, torch.ones_like(text), "t", None, {"s": stmts})
    ext = mem.StreamExtent.of(calib)
    assert (ext.tokens, ext.rows, ext.mask_bytes) == (9, 3, 3 * 3 * 3)
    assert mem.StreamExtent.of(CalibrationSamples(text, torch.ones_like(text), "t")) == mem.StreamExtent()
    plain = mem.estimate_memory(shape, 3, 5, 2)
    aux = mem.estimate_memory(shape, 3, 5, 2, auxiliary=ext)
    assert aux.activations == plain.activations + 2 * 9 * 4 * 4 + 27
    dense = mem.estimate_memory(shape, 3, 5, 2, dense=True, dense_rows=True, auxiliary=ext)
    assert dense.activations == aux.activations + 2 * (15 + 9) * 4 * 4 + (15 + 3) * (2 * 4 + 8) * 4
    halves = mem.estimate_memory(shape, 3, 5, 2, world=2, auxiliary=ext)  # each rank holds its share
    assert halves.activations == 2 * 2 * 5 * 4 * 4 + 2 * 5 * 4 * 4 + 14


def test_cross_statistic_layers_are_measured_group_by_group_on_the_pruned_model(worker):
    """With ``cross`` requested, o_proj's and down_proj's pruned-side inputs are those of the finished
    pruned model (q/k/v, resp. gate/up, already pruned), not those of the unpruned layer."""
    from truthprune import get_registry, prune_model

    calib = worker.dense_calibration()
    rec, model = worker.DenseRecorder(), worker.tiny_model()
    prune_model(model, calib, rec, get_registry().create("allocator", "uniform"), 0.5, batch_size=2, quiet=True)
    keep = calib.attention_mask.bool()
    for layer in (0, 1):
        for k, name in ((3, "o_proj"), (6, "down_proj")):
            module = getattr(model.model.layers[layer].self_attn if name == "o_proj" else model.model.layers[layer].mlp, name)
            got = {}
            h = module.register_forward_pre_hook(lambda m, a: got.__setitem__("x", a[0][keep].double().sum(0)))
            with torch.no_grad():
                model(input_ids=calib.input_ids, attention_mask=calib.attention_mask)
            h.remove()
            assert torch.allclose(rec.seen[layer * 7 + k]["sum"].double(), got["x"], rtol=1e-4, atol=1e-4), (layer, name)
