"""Auxiliary calibration streams (Pruner.auxiliary_calibration) and statistics masks.

A fake in-test pruner records the statistics it is handed, so these tests need no plugin
distribution: they check that a stream's statistics are computed on the stream's own inputs,
propagated through the already-pruned layers, restricted by ``stat_mask``, and that the main
statistics are unchanged by the presence of a stream.
"""

from __future__ import annotations

import copy

import pytest
import torch

from truthprune import (
    STAT_GRAM,
    STAT_SQ_NORM,
    STAT_SUM,
    CalibrationContext,
    CalibrationSamples,
    PruneResult,
    Pruner,
    get_registry,
    prune_model,
)
from truthprune.calibration.windows import attach_auxiliary
from truthprune.pruning.masks import mask_from_scores


class RecordingPruner(Pruner):
    """Magnitude masks; remembers the statistics of every linear it was asked to prune."""

    name = "recording"
    required_stats = frozenset({STAT_SQ_NORM, STAT_GRAM, STAT_SUM})

    def __init__(self, streams=None):
        super().__init__()
        self._streams = streams or {}
        self.seen = []

    def auxiliary_calibration(self, context):
        return self._streams

    def prune(self, weight, stats, target):
        self.seen.append(stats)
        return PruneResult(mask=mask_from_scores(weight.abs().float(), target))


def _run(model, calib, pruner, sparsity=0.5):
    uniform = get_registry().create("allocator", "uniform")
    return prune_model(model, calib, pruner, uniform, sparsity, batch_size=3, quiet=True)


def test_stream_equal_to_main_data_gets_identical_statistics(tiny_llama, tiny_calibration):
    stream = CalibrationSamples(tiny_calibration.input_ids.clone(), tiny_calibration.attention_mask.clone())
    calib = attach_auxiliary(copy.copy(tiny_calibration), RecordingPruner({"copy": stream}), CalibrationContext(tokenizer=None))
    pruner = RecordingPruner({"copy": stream})
    _run(tiny_llama, calib, pruner)
    assert len(pruner.seen) == 3 * 7
    for st in pruner.seen:  # every layer, including those after pruned ones
        aux = st.streams["copy"]
        assert aux.n_tokens == st.n_tokens == 8 * 64
        assert torch.equal(aux.gram, st.gram) and torch.equal(aux.sum, st.sum) and torch.equal(aux.sq_norm, st.sq_norm)


def test_streams_do_not_change_the_main_statistics_or_masks(tiny_llama, tiny_calibration):
    other = copy.deepcopy(tiny_llama)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 128, (5, 16), generator=g)
    stream = CalibrationSamples(ids, torch.ones_like(ids))
    with_stream, without = RecordingPruner({"s": stream}), RecordingPruner()
    calib = copy.copy(tiny_calibration)
    calib.auxiliary = {"s": stream}
    _run(tiny_llama, calib, with_stream)
    _run(other, tiny_calibration, without)
    for a, b in zip(with_stream.seen, without.seen):
        assert torch.equal(a.gram, b.gram) and not b.streams
        assert a.streams["s"].n_tokens == 5 * 16
        assert not torch.equal(a.streams["s"].gram, a.gram)
    assert all(torch.equal(x, y) for x, y in zip(tiny_llama.state_dict().values(), other.state_dict().values()))


def test_stat_mask_restricts_statistics_to_marked_tokens(tiny_llama):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, 128, (4, 12), generator=g)
    attn = torch.ones_like(ids)
    attn[0, :3] = 0  # left padding on the first sequence
    last = torch.zeros_like(ids, dtype=torch.bool)
    last[:, -1] = True
    stream = CalibrationSamples(ids, attn, stat_mask=last)
    main = CalibrationSamples(ids, attn, auxiliary={"last": stream})
    pruner = RecordingPruner({"last": stream})
    _run(tiny_llama, main, pruner, sparsity=0.0)
    first = pruner.seen[0]  # layer 0, q_proj: its input is the normed embedding of each token
    assert first.n_tokens == 12 * 4 - 3 and first.streams["last"].n_tokens == 4
    layer0 = tiny_llama.model.layers[0]
    with torch.no_grad():
        x = layer0.input_layernorm(tiny_llama.model.embed_tokens(ids[:, -1]))
    assert torch.allclose(first.streams["last"].sum, x.sum(0), atol=1e-5)
    assert torch.allclose(first.streams["last"].gram, x.t() @ x, atol=1e-5)


def test_malformed_stream_is_the_plugins_fault(tiny_calibration):
    from truthprune import PluginContractError

    bad = RecordingPruner({"x": "not samples"})
    with pytest.raises(PluginContractError, match="recording"):
        attach_auxiliary(copy.copy(tiny_calibration), bad, CalibrationContext(tokenizer=None))


def test_memory_check_skips_the_tokenizer_for_pruners_without_streams(monkeypatch):
    """A pruner that keeps its base class's auxiliary_calibration (a structured pruner included)
    has no streams to size: the memory check does not load a tokenizer for it."""
    from types import SimpleNamespace

    from truthprune.models import loading
    from truthprune.plugin.interfaces import StructuredPruner
    from truthprune.run import stages

    class Units(StructuredPruner):
        name = "units-test"

        def importance(self, model, calib, layers, context):
            return {}

    class Masks(Pruner):
        name = "masks-test"

        def prune(self, weight, stats, target):
            return PruneResult(mask=mask_from_scores(weight.abs().float(), target))

    def refuse(*a, **k):
        raise AssertionError("the tokenizer was loaded")

    monkeypatch.setattr(loading, "load_tokenizer", refuse)
    for pruner in (Units(), Masks()):
        assert stages._auxiliary_streams(SimpleNamespace(pruner=pruner, config=None), "unused") is None
    with pytest.raises(AssertionError, match="tokenizer was loaded"):  # a pruner with streams does need it
        stages._auxiliary_streams(SimpleNamespace(pruner=RecordingPruner(), config=SimpleNamespace(
            model="m", trust_remote_code=False)), "unused")
